/* Every BTF kind clang 14 emits: the decoder's dump must equal bpftool's. */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define __tag(x) __attribute__((btf_decl_tag(x)))
#define __user __attribute__((btf_type_tag("user")))

enum u8e { U8A = 0, U8B = 255 } __attribute__((packed));
enum s8e { S8A = -128, S8B = 127 } __attribute__((packed));
enum u16e { U16A = 1, U16B = 65535 } __attribute__((packed));
enum s16e { S16A = -32768, S16B = 1 } __attribute__((packed));
enum u32e { U32A = 0, U32B = 0xffffffffu };
enum s32e { S32A = -2147483647 - 1, S32B = -1, S32C = 7 };
enum u64e { U64A = 1, U64B = 0x123456789abcdefULL, U64C = 0xffffffffffffffffULL };
enum s64e { S64A = -1LL, S64B = -0x100000000LL, S64C = 0x7fffffffffffffffLL };

struct fwd_only;
union fwd_union;

struct bits {
	unsigned int a : 3;
	int b : 5;
	unsigned long long c : 40;
	char d;
	_Bool e : 1;
	enum u8e f : 4;
} __tag("struct_tag");

union un {
	struct { short x, y; } xy;
	unsigned int word;
	unsigned char bytes[4];
	int bf : 7;
};

struct everything {
	struct bits bits __tag("member_tag");
	union un u;
	struct { int anon_inner; };
	union { long l; double dd; };
	float f;
	double d;
	long double ld;
	const volatile int cv;
	int *restrict rp;
	int arr[2][3];
	char name[16];
	struct fwd_only *fwd;
	union fwd_union *fwdu;
	int __user *uptr;
	void (*cb)(int, ...);
	int (*fp)(struct everything *self, const char *fmt);
	enum u8e e1; enum s8e e2; enum u16e e3; enum s16e e4;
	enum u32e e5; enum s32e e6; enum u64e e7; enum s64e e8;
	__u64 big;
};

typedef struct everything everything_t;
typedef everything_t *everything_p;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, struct everything);
} things SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} ring SEC(".maps");

everything_t global_thing;
int counter = 1;
const volatile int config_value = 42;
static volatile __u64 hidden_static;
char custom_data[8] SEC(".data.custom") = "abc";
int tagged_var __tag("var_tag");
extern int extern_config __kconfig __attribute__((weak));

static __attribute__((noinline)) int helper(everything_p p __tag("param_tag"), int n)
{
	return p ? p->bits.b + n : n;
}

__tag("func_tag") int global_fn(struct bits *b)
{
	return b ? b->a : 0;
}

SEC("tracepoint/syscalls/sys_enter_execve")
int handle(void *ctx)
{
	__u32 key = 0;
	struct everything *t = bpf_map_lookup_elem(&things, &key);
	hidden_static++;
	return helper(t, counter + config_value + custom_data[0] + tagged_var + extern_config);
}

char LICENSE[] SEC("license") = "GPL";
