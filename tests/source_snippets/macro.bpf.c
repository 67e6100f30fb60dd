#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* Hostile shapes: records a macro defines two to a line (one source location for both),
 * a struct BTF lacks that first turns up as a member of another, a map reached through two
 * helper layers. */

#define TWO_EVENTS struct ev_a { int x; }; struct ev_b { long y; long z; };
TWO_EVENTS
#define TWO_ANON typedef struct { int p; } anon_a_t; typedef struct { long q; long r; } anon_b_t;
TWO_ANON

struct inner_ev {
	int a;
};

struct outer_ev {
	struct inner_ev in;
	long b;
};

struct deep_ev {
	char c[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} rb_a SEC(".maps"), rb_b SEC(".maps"), rb_anon_a SEC(".maps"), rb_anon_b SEC(".maps"),
  rb_outer SEC(".maps"), rb_inner SEC(".maps"), rb_deep SEC(".maps");

static __always_inline void inner(void *ring, struct deep_ev *e)
{
	bpf_ringbuf_output(ring, e, sizeof(*e), 0);
}

static __always_inline void outer(void *ring, struct deep_ev *e)
{
	inner(ring, e);
}

SEC("tracepoint/syscalls/sys_enter_execve")
int macro(void *ctx)
{
	struct ev_a a = {1};
	struct ev_b b = {2};
	anon_a_t c = {3};
	anon_b_t d = {4};
	struct outer_ev o = {};
	struct inner_ev i = {};
	struct deep_ev e = {};

	bpf_ringbuf_output(&rb_a, &a, sizeof(a), 0);
	bpf_ringbuf_output(&rb_b, &b, sizeof(b), 0);
	bpf_ringbuf_output(&rb_anon_a, &c, sizeof(c), 0);
	bpf_ringbuf_output(&rb_anon_b, &d, sizeof(d), 0);
	bpf_ringbuf_output(&rb_outer, &o, sizeof(o), 0);
	bpf_ringbuf_output(&rb_inner, &i, sizeof(i), 0);
	outer(&rb_deep, &e);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
