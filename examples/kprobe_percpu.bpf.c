// A twin of cilium/ebpf's examples/kprobe_percpu: execve() calls counted per CPU, in a
// per-CPU array (no atomic add needed: each CPU writes its own slot).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} kprobe_map SEC(".maps");

SEC("ksyscall/execve")
int kprobe_execve(void *ctx)
{
    __u32 key = 0;
    __u64 *count = bpf_map_lookup_elem(&kprobe_map, &key);
    if (count)
        *count += 1;
    return 0;
}
