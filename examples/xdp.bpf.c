// A twin of cilium/ebpf's examples/xdp: IPv4 packets counted per source address.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* source IPv4 address (network byte order) -> packets */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 16);
    __type(key, __u32);
    __type(value, __u32);
} xdp_stats_map SEC(".maps");

/* The IPv4 source address of the packet, or 0 when it is not IPv4. */
static __always_inline int ip_source(struct xdp_md *ctx, __u32 *saddr)
{
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
        return 0;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > end)
        return 0;
    *saddr = ip->saddr;
    return 1;
}

SEC("xdp")
int xdp_prog_func(struct xdp_md *ctx)
{
    __u32 ip;
    if (!ip_source(ctx, &ip))
        return XDP_PASS;
    __u32 *count = bpf_map_lookup_elem(&xdp_stats_map, &ip);
    if (count) {
        __sync_fetch_and_add(count, 1);
    } else {
        __u32 one = 1;
        bpf_map_update_elem(&xdp_stats_map, &ip, &one, BPF_ANY);
    }
    return XDP_PASS;
}
