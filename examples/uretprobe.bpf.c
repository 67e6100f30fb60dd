// A twin of cilium/ebpf's examples/uretprobe: the lines bash's readline() returns, sent
// to user space through a perf event array.
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

struct event {
    __u32 pid;
    char line[80];
};

struct {
    __uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
    __uint(key_size, sizeof(__u32));
    __uint(value_size, sizeof(__u32));
} events SEC(".maps");

struct event *unused_event __attribute__((unused));

SEC("uretprobe")
int BPF_KRETPROBE(uretprobe_bash_readline, const void *ret)
{
    struct event event = {};
    event.pid = bpf_get_current_pid_tgid() >> 32;
    bpf_probe_read_user_str(&event.line, sizeof(event.line), ret);
    bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, &event, sizeof(event));
    return 0;
}
