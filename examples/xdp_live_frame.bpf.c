// A twin of cilium/ebpf's examples/xdp_live_frame: BPF_PROG_TEST_RUN with live frames
// as a packet generator.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* Run in live-frame mode: every run transmits the packet out of the ingress interface. */
SEC("xdp")
int xdp_prog_tx(struct xdp_md *ctx)
{
    return XDP_TX;
}

/* Attached to the interface: drivers only transmit XDP frames where XDP is enabled. */
SEC("xdp")
int xdp_prog_pass(struct xdp_md *ctx)
{
    return XDP_PASS;
}
