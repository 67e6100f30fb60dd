// A twin of cilium/ebpf's examples/tcprtt: the smoothed RTT of every IPv4 TCP connection
// as it closes, from an fentry program on tcp_close(), through a ring buffer.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#define AF_INET 2

struct sock_common {
    __be32 skc_daddr;
    __be32 skc_rcv_saddr;
    __be16 skc_dport;
    __u16 skc_num;
    unsigned short skc_family;
} __attribute__((preserve_access_index));

struct sock {
    struct sock_common __sk_common;
} __attribute__((preserve_access_index));

struct tcp_sock {
    __u32 srtt_us;  /* smoothed RTT << 3, in microseconds */
} __attribute__((preserve_access_index));

struct event {
    __u16 sport;  /* host byte order, both ports */
    __u16 dport;
    __be32 saddr;
    __be32 daddr;
    __u32 srtt_us;  /* microseconds (the original divides down to ms; loopback is ~0 ms) */
};

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 1 << 24);
} events SEC(".maps");

struct event *unused_event __attribute__((unused));

SEC("fentry/tcp_close")
int BPF_PROG(tcp_close, struct sock *sk)
{
    if (sk->__sk_common.skc_family != AF_INET)
        return 0;
    /* The struct sock of a TCP socket is a tcp_sock; the helper checks it (5.9+). */
    struct tcp_sock *ts = bpf_skc_to_tcp_sock(sk);
    if (!ts)
        return 0;
    struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
    if (!e)
        return 0;
    e->saddr = sk->__sk_common.skc_rcv_saddr;
    e->daddr = sk->__sk_common.skc_daddr;
    e->sport = sk->__sk_common.skc_num;
    e->dport = bpf_ntohs(sk->__sk_common.skc_dport);
    e->srtt_us = ts->srtt_us >> 3;
    bpf_ringbuf_submit(e, 0);
    return 0;
}
