// A twin of cilium/ebpf's examples/kprobepin: the kprobe counter of examples/kprobe in a
// map pinned by name, so a second run (or bpftool) finds the count where the first left it.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __uint(pinning, LIBBPF_PIN_BY_NAME);
    __type(key, __u32);
    __type(value, __u64);
} kprobe_map SEC(".maps");

SEC("ksyscall/execve")
int kprobe_execve(void *ctx)
{
    __u32 key = 0;
    __u64 *count = bpf_map_lookup_elem(&kprobe_map, &key);
    if (count)
        __sync_fetch_and_add(count, 1);
    return 0;
}
