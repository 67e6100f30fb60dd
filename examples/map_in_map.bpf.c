// A twin of cilium/ebpf's examples/map_in_map: an array of maps whose inner maps are
// created from user space, each with its own size (BPF_F_INNER_MAP, Linux 5.10+).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

struct inner_map {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __uint(map_flags, BPF_F_INNER_MAP);
    __type(key, __u32);
    __type(value, __u32);
};

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
    __uint(max_entries, 5);
    __type(key, __u32);
    __array(values, struct inner_map);
} outer_map SEC(".maps");

/* A sum over one inner map, to show a program reading through the outer map. */
const volatile __u32 me = 0;
__u64 total = 0;

SEC("tracepoint/syscalls/sys_enter_getppid")
int sum_inner(void *ctx)
{
    if ((bpf_get_current_pid_tgid() >> 32) != me)
        return 0;
    __u32 outer_key = 0, inner_key = 0;
    __u32 *inner = bpf_map_lookup_elem(&outer_map, &outer_key);
    if (!inner)
        return 0;
    __u32 *value = bpf_map_lookup_elem(inner, &inner_key);
    if (value)
        total += *value;
    return 0;
}
