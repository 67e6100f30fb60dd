// A twin of cilium/ebpf's examples/tcx: packets per IPv4 session, ingress and egress.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* As seen on ingress; egress swaps the ends so both directions share one entry. */
struct session_key {
    __u32 saddr;  /* network byte order */
    __u32 daddr;
    __u16 sport;  /* network byte order; 0 for ICMP */
    __u16 dport;
    __u8 proto;
};

struct session_value {
    __u32 in_count;
    __u32 eg_count;
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16);
    __type(key, struct session_key);
    __type(value, struct session_value);
} stats_map SEC(".maps");

static __always_inline int session(struct __sk_buff *skb, struct session_key *key)
{
    void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
        return 0;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > end)
        return 0;
    if (ip->protocol == IPPROTO_TCP) {
        struct tcphdr *tcp = (void *)(ip + 1);
        if ((void *)(tcp + 1) > end)
            return 0;
        key->sport = tcp->source;
        key->dport = tcp->dest;
    } else if (ip->protocol == IPPROTO_UDP) {
        struct udphdr *udp = (void *)(ip + 1);
        if ((void *)(udp + 1) > end)
            return 0;
        key->sport = udp->source;
        key->dport = udp->dest;
    } else if (ip->protocol != IPPROTO_ICMP) {
        return 0;
    }
    key->proto = ip->protocol;
    key->saddr = ip->saddr;
    key->daddr = ip->daddr;
    return 1;
}

static __always_inline void count(struct session_key *key, int ingress)
{
    struct session_value *val = bpf_map_lookup_elem(&stats_map, key);
    if (val) {
        __sync_fetch_and_add(ingress ? &val->in_count : &val->eg_count, 1);
        return;
    }
    struct session_value fresh = {.in_count = ingress, .eg_count = !ingress};
    bpf_map_update_elem(&stats_map, key, &fresh, BPF_ANY);
}

SEC("tc")
int ingress_prog_func(struct __sk_buff *skb)
{
    struct session_key key = {};
    if (session(skb, &key))
        count(&key, 1);
    return TC_ACT_OK;
}

SEC("tc")
int egress_prog_func(struct __sk_buff *skb)
{
    struct session_key key = {};
    if (session(skb, &key)) {
        __u32 addr = key.saddr;
        __u16 port = key.sport;
        key.saddr = key.daddr;
        key.sport = key.dport;
        key.daddr = addr;
        key.dport = port;
        count(&key, 0);
    }
    return TC_ACT_OK;
}
