// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* "Learning eBPF" chapter 2, hello-tail.py: a raw tracepoint on every syscall entry
 * tail-calls into a program chosen by syscall number from the `syscall` program array,
 * which user space fills.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 500);
	/* Typed in BTF so that the generated handle takes syscall numbers as ints. */
	__type(key, __u32);
	__type(value, __u32);
} syscall SEC(".maps");

SEC("raw_tracepoint/sys_enter")
int hello(struct bpf_raw_tracepoint_args *ctx)
{
	int opcode = ctx->args[1];

	bpf_tail_call(ctx, &syscall, opcode);
	/* Reached only when the slot is empty (or the number is past the array). */
	bpf_printk("Another syscall: %d", opcode);
	return 0;
}

SEC("raw_tracepoint")
int hello_exec(void *ctx)
{
	bpf_printk("Executing a program");
	return 0;
}

SEC("raw_tracepoint")
int hello_timer(struct bpf_raw_tracepoint_args *ctx)
{
	int opcode = ctx->args[1];

	switch (opcode) {
	case 222:
		bpf_printk("Creating a timer");
		break;
	case 226:
		bpf_printk("Deleting a timer");
		break;
	default:
		bpf_printk("Some other timer operation");
		break;
	}
	return 0;
}

SEC("raw_tracepoint")
int print_syscall(struct bpf_raw_tracepoint_args *ctx)
{
	int opcode = ctx->args[1];

	bpf_printk("Syscall: %d", opcode);
	return 0;
}

SEC("raw_tracepoint")
int ignore_opcode(void *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
