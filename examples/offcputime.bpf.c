// SPDX-License-Identifier: GPL-2.0
/* offcputime, after bcc's libbpf-tools/offcputime.bpf.c: time tasks spend blocked, summed
 * per (kernel stack, user stack, task). The stack map's value size is set from Python
 * before load, as libbpf-tools does with bpf_map__set_value_size(). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define TASK_COMM_LEN 16

struct task_struct {
	int pid;
	int tgid;
} __attribute__((preserve_access_index));

struct key_t {
	__u32 pid;
	__u32 tgid;
	__s32 kern_stack_id;
	__s32 user_stack_id;
	char comm[TASK_COMM_LEN];
};

struct internal_key {
	__u64 start_ts;
	struct key_t key;
};

const volatile __u32 targ_tgid = 0; /* 0: every process */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, struct internal_key);
} start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 1024);
	__uint(key_size, sizeof(__u32));
} stackmap SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, struct key_t);
	__type(value, __u64); /* total microseconds off CPU */
} info SEC(".maps");

SEC("tp_btf/sched_switch")
int BPF_PROG(sched_switch, _Bool preempt, struct task_struct *prev, struct task_struct *next)
{
	/* prev is the current task: its stacks are the ones that blocked. */
	__u32 pid = prev->pid;
	if (pid && (!targ_tgid || prev->tgid == targ_tgid)) {
		struct internal_key ik = {};
		ik.start_ts = bpf_ktime_get_ns();
		ik.key.pid = pid;
		ik.key.tgid = prev->tgid;
		ik.key.kern_stack_id = bpf_get_stackid(ctx, &stackmap, 0);
		ik.key.user_stack_id = bpf_get_stackid(ctx, &stackmap, BPF_F_USER_STACK);
		bpf_get_current_comm(ik.key.comm, sizeof(ik.key.comm));
		bpf_map_update_elem(&start, &pid, &ik, BPF_ANY);
	}
	pid = next->pid;
	struct internal_key *ik = bpf_map_lookup_elem(&start, &pid);
	if (!ik)
		return 0;
	__u64 delta_us = (bpf_ktime_get_ns() - ik->start_ts) / 1000;
	__u64 *total = bpf_map_lookup_elem(&info, &ik->key);
	if (total)
		__sync_fetch_and_add(total, delta_us);
	else
		bpf_map_update_elem(&info, &ik->key, &delta_us, BPF_NOEXIST);
	bpf_map_delete_elem(&start, &pid);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
