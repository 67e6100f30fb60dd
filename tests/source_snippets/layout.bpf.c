#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* Everything a record layout can hold. Compiled twice: without IN_BTF clang leaves
 * struct layout out of BTF and ebpf-gen lays it out from this source; with IN_BTF the
 * unused global puts clang's own layout in BTF, and the two must agree. */

typedef unsigned int u32_t;

enum state { IDLE, RUNNING = 5, BROKEN = -1 };
enum small_state { OFF, ON };

struct point {
	short x;
	short y;
};

struct node;

struct layout {
	char tag;
	const volatile u32_t flags;
	struct {
		int ax;
		int ay;
	};
	union {
		long l;
		char c[3];
	} u;
	unsigned a : 3, b : 7;
	int : 0;
	signed char c : 2;
	unsigned long long wide : 33;
	enum state st;
	enum small_state sm;
	struct point pts[2];
	char names[2][5];
	char *p;
	struct node *next;
	void (*fn)(int);
	_Bool ok;
	__u64 ts;
	int tail[];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(int));
	__uint(value_size, sizeof(int));
} events SEC(".maps");

#ifdef IN_BTF
struct layout *unused_layout __attribute__((unused));
#endif

/* never sent anywhere: reaches the generated module only through --type */
struct config_t {
	int level;
	char name[8];
};

SEC("tracepoint/syscalls/sys_enter_execve")
int layout(void *ctx)
{
	struct layout l = {.tag = 1};

	bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, &l, sizeof(l));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
