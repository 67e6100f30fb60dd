// A twin of cilium/ebpf's examples/ringbuffer: one event per execve() through a ring
// buffer. The kprobe of the original, plus a tracepoint twin for kernels without kprobes.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

struct event {
    __u32 pid;
    char comm[80];
};

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 1 << 24);
} events SEC(".maps");

struct event *unused_event __attribute__((unused));

static __always_inline int send(void)
{
    struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
    if (!e)
        return 0;
    e->pid = bpf_get_current_pid_tgid() >> 32;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    bpf_ringbuf_submit(e, 0);
    return 0;
}

SEC("ksyscall/execve")
int kprobe_execve(void *ctx) { return send(); }

SEC("tracepoint/syscalls/sys_enter_execve")
int kprobe_execve_tp(void *ctx) { return send(); }
