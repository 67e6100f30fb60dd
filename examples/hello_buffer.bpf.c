// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* "Learning eBPF" chapter 2, hello-buffer.py: send one record per execve() to user space,
 * through a perf event array (`output`, as in the book) or a ring buffer (`rb`).
 *
 * struct data_t is only ever a local variable handed to the output helpers, so clang
 * leaves it out of BTF. It is deliberately left that way (no __type() on the perf map:
 * libbpf refuses key/value types on PERF_EVENT_ARRAY) to show ebpf-gen recovering the
 * layout from this source.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct data_t {
	int pid;
	int uid;
	char command[16];
	char message[12];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(int));
	__uint(value_size, sizeof(int));
} output SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} rb SEC(".maps");

static __always_inline void fill(struct data_t *data)
{
	char message[12] = "Hello World";

	data->pid = bpf_get_current_pid_tgid() >> 32;
	data->uid = bpf_get_current_uid_gid() & 0xFFFFFFFF;
	bpf_get_current_comm(&data->command, sizeof(data->command));
	bpf_probe_read_kernel(&data->message, sizeof(data->message), message);
}

static __always_inline int to_perf(void *ctx)
{
	struct data_t data = {};

	fill(&data);
	bpf_perf_event_output(ctx, &output, BPF_F_CURRENT_CPU, &data, sizeof(data));
	return 0;
}

static __always_inline int to_ringbuf(void)
{
	struct data_t data = {};

	fill(&data);
	bpf_ringbuf_output(&rb, &data, sizeof(data), 0);
	return 0;
}

SEC("ksyscall/execve")
int hello(void *ctx)
{
	return to_perf(ctx);
}

SEC("tracepoint/syscalls/sys_enter_execve")
int hello_tp(void *ctx)
{
	return to_perf(ctx);
}

SEC("ksyscall/execve")
int hello_rb(void *ctx)
{
	return to_ringbuf();
}

SEC("tracepoint/syscalls/sys_enter_execve")
int hello_rb_tp(void *ctx)
{
	return to_ringbuf();
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
