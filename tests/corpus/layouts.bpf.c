// Layouts ctypes must get right: bitfields, unions, anonymous members, enums, nested arrays.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

enum color { RED, GREEN = 5, BLUE = -1 };
enum big_flags : unsigned long long { HUGE = 0x100000000ULL };

struct flags {
    unsigned int a : 3;
    unsigned int b : 5;
    int c : 7;
    unsigned long long wide : 40;
    unsigned char tail;
};

union value {
    __u64 as_u64;
    __u32 as_u32[2];
    struct { __u16 lo, hi; } parts;
};

struct record {
    __u8 kind;
    union { __u32 ip4; __u8 ip6[16]; };
    struct { __u16 port; __u8 proto; } addr;
    struct flags f;
    union value v;
    enum color color;
    __s64 matrix[2][3];
    void *ptr;
} __attribute__((aligned(8)));

typedef struct record record_t;

struct packed_thing {
    __u8 a;
    __u32 b;
} __attribute__((packed));

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16);
    __type(key, struct packed_thing);
    __type(value, record_t);
} records SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
    __uint(key_size, sizeof(int));
    __uint(value_size, sizeof(int));
} perf_out SEC(".maps");

enum big_flags big = HUGE;
record_t last_record = {};
const volatile enum color favourite = GREEN;

SEC("raw_tracepoint/sys_enter")
int on_enter(void *ctx) {
    struct packed_thing k = { .a = 1, .b = 2 };
    record_t *r = bpf_map_lookup_elem(&records, &k);
    if (r) {
        last_record = *r;
        bpf_perf_event_output(ctx, &perf_out, BPF_F_CURRENT_CPU, r, sizeof(*r));
    }
    return favourite + (int)big;
}

char LICENSE[] SEC("license") = "GPL";
