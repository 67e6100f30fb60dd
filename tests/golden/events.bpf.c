// SPDX-License-Identifier: GPL-2.0
/* Golden snippet: a ring buffer whose event type comes from the C source; a program. */
#include "golden.h"

/* BEGIN TYPES */
struct sample {
	__u32 pid;
	char comm[16];
};
/* END TYPES */

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} samples SEC(".maps");
SEC("tracepoint/syscalls/sys_enter_getppid")
int on_getppid(void *ctx)
{
	struct sample *s = bpf_ringbuf_reserve(&samples, sizeof(*s), 0);
	if (!s)
		return 0;
	s->pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(s->comm, sizeof(s->comm));
	bpf_ringbuf_submit(s, 0);
	return 0;
}
