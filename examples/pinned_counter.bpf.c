// SPDX-License-Identifier: GPL-2.0
/* execve() calls per user ID in a map pinned by name: the counts live on the BPF
 * filesystem, so they survive a restart of the app (the next run takes the map up again). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__type(key, __u32);
	__type(value, __u64);
} exec_counts SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_execve")
int count_exec(void *ctx)
{
	__u32 uid = bpf_get_current_uid_gid();
	__u64 one = 1, *n = bpf_map_lookup_elem(&exec_counts, &uid);
	if (n)
		__sync_fetch_and_add(n, 1);
	else
		bpf_map_update_elem(&exec_counts, &uid, &one, BPF_NOEXIST);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
