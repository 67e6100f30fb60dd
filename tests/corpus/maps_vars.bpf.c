// Every common map kind, programs in several sections, and globals in every data section.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct rec { __u32 pid; __u64 total; char comm[16]; };

struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 128);
         __uint(map_flags, BPF_F_NO_PREALLOC);
         __type(key, __u32); __type(value, struct rec); } by_pid SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 4);
         __type(key, __u32); __type(value, __u64); } counts SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_PERCPU_HASH); __uint(max_entries, 8);
         __type(key, __u64); __type(value, __u32); } pc_hash SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); __uint(max_entries, 1);
         __type(key, __u32); __type(value, struct rec); } pc_array SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_LRU_HASH); __uint(max_entries, 16);
         __uint(key_size, 8); __uint(value_size, 12); } sized_lru SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY); } events SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 4096); } ring SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 2);
         __uint(pinning, LIBBPF_PIN_BY_NAME);
         __type(key, __u32); __type(value, __u32); } pinned SEC(".maps");

int tail(void *ctx);
struct { __uint(type, BPF_MAP_TYPE_PROG_ARRAY); __uint(max_entries, 2);
         __type(key, __u32); __array(values, int (void *)); } jumps SEC(".maps") = {
    .values = { [1] = (void *)&tail },
};

struct inner { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 3);
               __type(key, __u32); __type(value, __u16); };
struct { __uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS); __uint(max_entries, 2);
         __type(key, __u32); __array(values, struct inner); } outer_arr SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_HASH_OF_MAPS); __uint(max_entries, 2);
         __type(key, __u64); __array(values, struct inner); } outer_hash SEC(".maps");

__u64 hits = 0;
__u32 more_bss[3];
int ready = 1;
char tag[5] = "abcd";
const volatile __u32 min_pid = 10;
const volatile char greeting[7] = "hello!";
int custom_a SEC(".data.custom") = 3;
__u64 custom_b SEC(".data.custom") = 4;
const volatile __u16 ro_custom SEC(".rodata.custom") = 5;
static int hidden_static = 2;
__attribute__((visibility("hidden"))) int hidden_global = 6;

static __attribute__((noinline)) int helper(int x) { return x + hidden_static + hidden_global; }
__attribute__((noinline)) int global_sub(int x) { return x * 2; }

SEC("tracepoint/syscalls/sys_enter_execve")
int on_execve(void *ctx) {
    __u32 k = 0;
    __u64 *c = bpf_map_lookup_elem(&counts, &k);
    if (c) *c += min_pid + greeting[0] + ro_custom + custom_a + custom_b + tag[0];
    hits += helper(ready) + global_sub(more_bss[1]);
    bpf_tail_call(ctx, &jumps, 1);
    return 0;
}

SEC("raw_tracepoint/sys_enter")
int on_enter(void *ctx) {
    __u32 k = 1; struct rec *r = bpf_map_lookup_elem(&by_pid, &k);
    void *m = bpf_map_lookup_elem(&outer_arr, &k);
    void *h = bpf_map_lookup_elem(&outer_hash, &k);
    __u32 *p = bpf_map_lookup_elem(&pinned, &k);
    void *q = bpf_map_lookup_elem(&pc_hash, &k);
    void *s = bpf_map_lookup_elem(&pc_array, &k);
    void *l = bpf_map_lookup_elem(&sized_lru, &k);
    bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, &k, sizeof(k));
    bpf_ringbuf_output(&ring, &k, sizeof(k), 0);
    return (r != 0) + (m != 0) + (h != 0) + (p != 0) + (q != 0) + (s != 0) + (l != 0);
}

SEC("ksyscall/execve")
int tail(void *ctx) { return 0; }

SEC("tracepoint/sched/sched_process_exit")
int on_exit(void *ctx) { return 0; }

char LICENSE[] SEC("license") = "GPL";
