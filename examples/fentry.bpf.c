// A twin of cilium/ebpf's examples/fentry: every IPv4 TCP connect(), seen by an fentry
// program on tcp_connect() and sent to user space through a ring buffer.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#define AF_INET 2
#define TASK_COMM_LEN 16

/* Only the fields read, relocated against the running kernel's BTF (CO-RE): in the kernel
 * they sit in anonymous unions of struct sock_common, which libbpf matches by name. */
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

struct event {
    __u8 comm[TASK_COMM_LEN];
    __u16 sport;  /* network byte order, like dport */
    __be16 dport;
    __be32 saddr;
    __be32 daddr;
};

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 1 << 24);
} events SEC(".maps");

struct event *unused_event __attribute__((unused));

SEC("fentry/tcp_connect")
int BPF_PROG(tcp_connect, struct sock *sk)
{
    if (sk->__sk_common.skc_family != AF_INET)
        return 0;
    struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
    if (!e)
        return 0;
    e->saddr = sk->__sk_common.skc_rcv_saddr;
    e->daddr = sk->__sk_common.skc_daddr;
    e->dport = sk->__sk_common.skc_dport;
    e->sport = bpf_htons(sk->__sk_common.skc_num);
    bpf_get_current_comm(&e->comm, TASK_COMM_LEN);
    bpf_ringbuf_submit(e, 0);
    return 0;
}
