// SPDX-License-Identifier: GPL-2.0
/* Golden snippet: map kinds with their own handles: stack traces, queue/stack, bloom filter,
 * LPM trie, local storage. */
#include "golden.h"

/* BEGIN TYPES */
struct lpm_key { __u32 prefixlen; __u8 addr[16]; };
struct stat_v { __u64 n; };
/* END TYPES */

struct { __uint(type, BPF_MAP_TYPE_STACK_TRACE); __uint(max_entries, 16);
         __uint(key_size, 4); __uint(value_size, 127 * 8); } stacks SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_QUEUE); __uint(max_entries, 4);
         __type(value, __u64); } fifo SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_STACK); __uint(max_entries, 4);
         __type(value, struct stat_v); } lifo SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_BLOOM_FILTER); __uint(max_entries, 64);
         __type(value, __u32); } seen SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_LPM_TRIE); __uint(max_entries, 16);
         __uint(map_flags, BPF_F_NO_PREALLOC);
         __type(key, struct lpm_key); __type(value, __u32); } routes SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_TASK_STORAGE); __uint(map_flags, BPF_F_NO_PREALLOC);
         __type(key, int); __type(value, struct stat_v); } tstore SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_SK_STORAGE); __uint(map_flags, BPF_F_NO_PREALLOC);
         __type(key, int); __type(value, __u32); } skstore SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_getppid")
int touch(void *ctx) { return 0; }
