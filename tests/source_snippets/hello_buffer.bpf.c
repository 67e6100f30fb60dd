#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
/* data_t only ever lives on the stack: clang leaves it out of BTF (cilium/ebpf#1747) */

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

#ifdef IN_BTF
/* the fix the warning suggests */
struct data_t *unused_data_t __attribute__((unused));
#endif

SEC("tracepoint/syscalls/sys_enter_execve")
int hello(void *ctx)
{
	struct data_t data = {};

	data.pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(&data.command, sizeof(data.command));
	bpf_perf_event_output(ctx, &output, BPF_F_CURRENT_CPU, &data, sizeof(data));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
