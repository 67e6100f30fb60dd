// A twin of cilium/ebpf's examples/tracepoint_in_c: kmem/mm_page_alloc events counted.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} counting_map SEC(".maps");

/* The tracepoint's own fields are not needed: the event is only counted. */
SEC("tracepoint/kmem/mm_page_alloc")
int mm_page_alloc(void *ctx)
{
    __u32 key = 0;
    __u64 *count = bpf_map_lookup_elem(&counting_map, &key);
    if (count)
        __sync_fetch_and_add(count, 1);
    return 0;
}
