/* SPDX-License-Identifier: MIT */
/*
 * ebpf_gen/events.bpf.h: ring buffer output that counts its drops.
 *
 * A full BPF ring buffer makes bpf_ringbuf_output()/bpf_ringbuf_reserve() fail inside the
 * program, and the kernel reports that nowhere: the sample is just gone. Declare the ring
 * with EBPF_GEN_RINGBUF (or add EBPF_GEN_LOST_COUNTER next to your own declaration) and send
 * through the helpers below: each failure adds one to a per-CPU counter in the map
 * <ring>__lost, which ebpf-gen's RingBuf.lost sums, so user space sees the drops.
 *
 *   #include <linux/bpf.h>          (or vmlinux.h)
 *   #include <bpf/bpf_helpers.h>
 *   #include <ebpf_gen/events.bpf.h>  (the generator's compile finds it)
 *
 *   EBPF_GEN_RINGBUF(events, 256 * 1024);
 *
 *   struct event e = {...};
 *   ebpf_gen_ringbuf_output(events, &e, sizeof(e), 0);
 *
 *   struct event *p = ebpf_gen_ringbuf_reserve(events, struct event);
 *   if (!p)
 *           return 0;          (counted already)
 *   ...
 *   bpf_ringbuf_submit(p, 0);
 *
 * The helpers are macros, not functions, so that the generator's source analysis sees the
 * record's type at the call, as with the plain helpers.
 */
#ifndef EBPF_GEN_EVENTS_BPF_H
#define EBPF_GEN_EVENTS_BPF_H

#include <bpf/bpf_helpers.h>

/* The per-CPU drop counter of ring `name`: one __u64 per CPU, summed by RingBuf.lost. */
#define EBPF_GEN_LOST_COUNTER(name)                                                       \
	struct {                                                                          \
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);                                  \
		__uint(max_entries, 1);                                                   \
		__type(key, __u32);                                                       \
		__type(value, __u64);                                                     \
	} name##__lost SEC(".maps")

/* A ring buffer of `bytes` (a power of 2, a multiple of the page size) and its counter. */
#define EBPF_GEN_RINGBUF(name, bytes)                                                     \
	struct {                                                                          \
		__uint(type, BPF_MAP_TYPE_RINGBUF);                                       \
		__uint(max_entries, bytes);                                               \
	} name SEC(".maps");                                                              \
	EBPF_GEN_LOST_COUNTER(name)

static __always_inline void ebpf_gen__count_lost(void *counter)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(counter, &zero);

	if (n)
		__sync_fetch_and_add(n, 1); /* per CPU, but a nested program may run between */
}

/* bpf_ringbuf_output() on ring `name`, counting a failure; returns the helper's result. */
#define ebpf_gen_ringbuf_output(name, data, size, flags)                                  \
	({                                                                                \
		long __ebpf_gen_ret = bpf_ringbuf_output(&name, (data), (size), (flags));  \
		if (__ebpf_gen_ret)                                                       \
			ebpf_gen__count_lost(&name##__lost);                              \
		__ebpf_gen_ret;                                                           \
	})

/* bpf_ringbuf_reserve() of one `type` on ring `name`, counting a failure; NULL then. */
#define ebpf_gen_ringbuf_reserve(name, type)                                              \
	({                                                                                \
		type *__ebpf_gen_rec = bpf_ringbuf_reserve(&name, sizeof(type), 0);       \
		if (!__ebpf_gen_rec)                                                      \
			ebpf_gen__count_lost(&name##__lost);                              \
		__ebpf_gen_rec;                                                           \
	})

#endif /* EBPF_GEN_EVENTS_BPF_H */
