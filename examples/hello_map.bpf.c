// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* "Learning eBPF" chapter 2, hello-map.py: count execve() calls per user ID in a hash map
 * that user space reads every few seconds. hello_tp is the tracepoint twin of the kprobe
 * program for kernels without kprobes.
 */
#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u64);
	__type(value, __u64);
} counter_table SEC(".maps");

static __always_inline int count_exec(void)
{
	__u64 uid = bpf_get_current_uid_gid() & 0xFFFFFFFF;
	__u64 counter = 0;
	__u64 *p;

	p = bpf_map_lookup_elem(&counter_table, &uid);
	if (p)
		counter = *p;
	counter++;
	bpf_map_update_elem(&counter_table, &uid, &counter, BPF_ANY);
	return 0;
}

SEC("ksyscall/execve")
int hello(void *ctx)
{
	return count_exec();
}

SEC("tracepoint/syscalls/sys_enter_execve")
int hello_tp(void *ctx)
{
	return count_exec();
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
