// Kernel types from vmlinux.h: CO-RE reads of task_struct, an fentry program, a ring buffer.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

struct exec_event {
    pid_t pid;
    pid_t ppid;
    u32 uid;
    u64 start_ns;
    char comm[TASK_COMM_LEN];
};

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 1 << 16);
} exec_events SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 1024);
    __type(key, pid_t);
    __type(value, struct exec_event);
} last_exec SEC(".maps");

u64 unlinks = 0;

SEC("tracepoint/sched/sched_process_exec")
int on_exec(struct trace_event_raw_sched_process_exec *ctx) {
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    struct exec_event *e = bpf_ringbuf_reserve(&exec_events, sizeof(*e), 0);
    if (!e)
        return 0;
    e->pid = BPF_CORE_READ(task, tgid);
    e->ppid = BPF_CORE_READ(task, real_parent, tgid);
    e->uid = BPF_CORE_READ(task, cred, uid.val);
    e->start_ns = BPF_CORE_READ(task, start_time);
    bpf_get_current_comm(e->comm, sizeof(e->comm));
    bpf_map_update_elem(&last_exec, &e->pid, e, BPF_ANY);
    bpf_ringbuf_submit(e, 0);
    return 0;
}

SEC("fentry/do_unlinkat")
int BPF_PROG(on_unlink, int dfd, struct filename *name) {
    __sync_fetch_and_add(&unlinks, 1);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
