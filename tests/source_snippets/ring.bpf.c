#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* Every way a ring buffer gets its records: output, reserve into an assignment, reserve
 * into a declaration, reserve inside a helper that takes the map, a typedef'd struct. */

struct out_event {
	__u32 pid;
	__u64 ts;
};

struct res_event {
	int kind;
	char comm[16];
};

struct decl_event {
	long a;
	short b;
};

typedef struct {
	unsigned char tag;
	unsigned int value;
} anon_event_t;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} rb_out SEC(".maps"), rb_assign SEC(".maps"), rb_decl SEC(".maps"), rb_typedef SEC(".maps");

static __always_inline int submit(void *ring, int kind)
{
	struct res_event *e;

	e = bpf_ringbuf_reserve(ring, sizeof(*e), 0);
	if (!e)
		return 0;
	e->kind = kind;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

static __always_inline int relay(void *ring)
{
	return submit(ring, 2);
}

SEC("tracepoint/syscalls/sys_enter_execve")
int ring(void *ctx)
{
	struct out_event o = {.pid = 1};

	bpf_ringbuf_output(&rb_out, &o, sizeof(o), 0);

	struct decl_event *d = bpf_ringbuf_reserve(&rb_decl, sizeof(*d), 0);
	if (d)
		bpf_ringbuf_submit(d, 0);

	anon_event_t *t = bpf_ringbuf_reserve(&rb_typedef, sizeof(*t), 0);
	if (t)
		bpf_ringbuf_discard(t, 0);

	return relay(&rb_assign);
}

char LICENSE[] SEC("license") = "GPL";
