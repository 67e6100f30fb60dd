// A profile-style sampler: perf_event samples of the cpu-clock, counted per process.
#include <linux/bpf.h>
#include <linux/bpf_perf_event.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct sample_key {
    __u32 pid;        /* thread group id */
    char comm[16];
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 4096);
    __type(key, struct sample_key);
    __type(value, __u64);
} samples SEC(".maps");

__u64 idle = 0; /* samples that hit the idle task */

SEC("perf_event")
int on_sample(struct bpf_perf_event_data *ctx)
{
    struct sample_key key = {.pid = bpf_get_current_pid_tgid() >> 32};
    if (key.pid == 0) {
        __sync_fetch_and_add(&idle, 1);
        return 0;
    }
    bpf_get_current_comm(&key.comm, sizeof(key.comm));
    __u64 *n = bpf_map_lookup_elem(&samples, &key);
    if (n) {
        __sync_fetch_and_add(n, 1);
    } else {
        __u64 one = 1;
        bpf_map_update_elem(&samples, &key, &one, BPF_NOEXIST);
    }
    return 0;
}
