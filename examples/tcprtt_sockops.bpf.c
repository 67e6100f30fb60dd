// A twin of cilium/ebpf's examples/tcprtt_sockops: a sockops program on a cgroup asks the
// kernel for an RTT callback on every TCP connection the cgroup's processes establish,
// and sends each new smoothed RTT to user space through a ring buffer.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#define AF_INET 2
#define TCP_CLOSE 7

enum sock_type { SOCK_TYPE_ACTIVE = 0, SOCK_TYPE_PASSIVE = 1 };

struct sk_key {
    __u32 local_ip4;   /* network byte order */
    __u32 remote_ip4;
    __u32 local_port;  /* host byte order */
    __u32 remote_port;
};

struct sk_info {
    struct sk_key sk_key;
    __u8 sk_type;  /* enum sock_type: which end connected */
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65535);
    __type(key, struct sk_key);
    __type(value, struct sk_info);
} map_estab_sk SEC(".maps");

struct rtt_event {
    __u16 sport;  /* host byte order */
    __u16 dport;
    __u32 saddr;  /* network byte order */
    __u32 daddr;
    __u32 srtt_us;  /* microseconds (the original divides down to ms; loopback is ~0 ms) */
    __u8 passive;   /* 1: the accepting end */
};

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 1 << 24);
} rtt_events SEC(".maps");

struct rtt_event *unused_event __attribute__((unused));

static __always_inline void init_sk_key(struct bpf_sock_ops *skops, struct sk_key *key)
{
    key->local_ip4 = skops->local_ip4;
    key->remote_ip4 = skops->remote_ip4;
    key->local_port = skops->local_port;                /* already host order */
    key->remote_port = bpf_ntohl(skops->remote_port);   /* network order, in 32 bits */
}

static __always_inline void established(struct bpf_sock_ops *skops, __u8 type)
{
    struct sk_info info = {.sk_type = type};
    init_sk_key(skops, &info.sk_key);
    if (bpf_map_update_elem(&map_estab_sk, &info.sk_key, &info, BPF_NOEXIST) != 0)
        return;
    /* RTT_CB: a callback on every new RTT sample; STATE_CB: one at close, to forget it. */
    bpf_sock_ops_cb_flags_set(skops, BPF_SOCK_OPS_RTT_CB_FLAG | BPF_SOCK_OPS_STATE_CB_FLAG);
}

static __always_inline void rtt(struct bpf_sock_ops *skops)
{
    struct sk_key key = {};
    init_sk_key(skops, &key);
    struct sk_info *info = bpf_map_lookup_elem(&map_estab_sk, &key);
    if (!info)
        return;
    struct rtt_event *e = bpf_ringbuf_reserve(&rtt_events, sizeof(*e), 0);
    if (!e)
        return;
    /* As the connecting end sees it: source is the client, whichever end reports. */
    if (info->sk_type == SOCK_TYPE_ACTIVE) {
        e->saddr = key.local_ip4;
        e->daddr = key.remote_ip4;
        e->sport = key.local_port;
        e->dport = key.remote_port;
    } else {
        e->saddr = key.remote_ip4;
        e->daddr = key.local_ip4;
        e->sport = key.remote_port;
        e->dport = key.local_port;
    }
    e->passive = info->sk_type;
    e->srtt_us = skops->srtt_us >> 3;
    bpf_ringbuf_submit(e, 0);
}

SEC("sockops")
int bpf_sockops_cb(struct bpf_sock_ops *skops)
{
    if (skops->family != AF_INET)
        return 0;
    switch (skops->op) {
    case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
        established(skops, SOCK_TYPE_ACTIVE);
        break;
    case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
        established(skops, SOCK_TYPE_PASSIVE);
        break;
    case BPF_SOCK_OPS_RTT_CB:
        rtt(skops);
        break;
    case BPF_SOCK_OPS_STATE_CB:
        if (skops->args[1] == TCP_CLOSE) {
            struct sk_key key = {};
            init_sk_key(skops, &key);
            bpf_map_delete_elem(&map_estab_sk, &key);
        }
        break;
    }
    return 0;
}
