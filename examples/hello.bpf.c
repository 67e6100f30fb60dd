// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* "Learning eBPF" chapter 2, hello.py: print a line to the trace pipe on every execve().
 *
 * The book attaches a kprobe to the execve syscall. Kernels built without kprobes
 * (CONFIG_KPROBES=n) still have the syscall tracepoints, so the same body is also
 * offered as a tracepoint program; the app attaches one of the two.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

static __always_inline int say_hello(void)
{
	bpf_printk("Hello World!");
	return 0;
}

SEC("ksyscall/execve")
int hello(void *ctx)
{
	return say_hello();
}

SEC("tracepoint/syscalls/sys_enter_execve")
int hello_tp(void *ctx)
{
	return say_hello();
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
