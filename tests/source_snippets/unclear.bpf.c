#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* Maps whose event type the source does not pin down. */

struct a_event {
	int a;
};

struct b_event {
	long b;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(int));
	__uint(value_size, sizeof(int));
} mixed SEC(".maps"), opaque SEC(".maps"), idle SEC(".maps");

static __always_inline void send_raw(void *ctx, void *data, __u64 size)
{
	bpf_perf_event_output(ctx, &opaque, BPF_F_CURRENT_CPU, data, size);
}

SEC("tracepoint/syscalls/sys_enter_execve")
int unclear(void *ctx)
{
	struct a_event a = {1};
	struct b_event b = {2};

	bpf_perf_event_output(ctx, &mixed, BPF_F_CURRENT_CPU, &a, sizeof(a));
	bpf_perf_event_output(ctx, &mixed, BPF_F_CURRENT_CPU, &b, sizeof(b));
	send_raw(ctx, &a, sizeof(a));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
