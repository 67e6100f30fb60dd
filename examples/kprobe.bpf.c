// A twin of cilium/ebpf's examples/kprobe: execve() calls counted by a kprobe on the
// syscall, in a one-slot array map.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} kprobe_map SEC(".maps");

/* ksyscall: libbpf finds the arch's syscall symbol (__x64_sys_execve), as cilium's
 * link.Kprobe("sys_execve") does. */
SEC("ksyscall/execve")
int kprobe_execve(void *ctx)
{
    __u32 key = 0;
    __u64 *count = bpf_map_lookup_elem(&kprobe_map, &key);
    if (count)
        __sync_fetch_and_add(count, 1);
    return 0;
}
