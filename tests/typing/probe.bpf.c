// The skeleton the typing cases are checked against: one of each thing a user touches.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

enum event_kind { EXEC = 1, EXIT = 2 };

struct count_key {
    __u32 pid;
    char comm[16];
};

struct event {
    __u32 pid;
    enum event_kind kind;
    char comm[16];
    __u64 args[4];
    struct count_key key;
    __u8 flag : 1, level : 3;
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 128);
    __type(key, struct count_key);
    __type(value, __u64);
} counts SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 1 << 16);
} events SEC(".maps");

const volatile __u32 targ_pid = 0;
const volatile char targ_comm[16] = {};
__u64 seen = 0;

SEC("tracepoint/syscalls/sys_enter_execve")
int on_exec(void *ctx) {
    struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
    if (!e)
        return 0;
    e->pid = bpf_get_current_pid_tgid() >> 32;
    e->kind = EXEC;
    if (targ_pid && e->pid != targ_pid) {
        bpf_ringbuf_discard(e, 0);
        return 0;
    }
    seen++;
    bpf_ringbuf_submit(e, 0);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
