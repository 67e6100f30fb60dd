// The C reference consumer of bench/events.py: libbpf's ring_buffer__poll/perf_buffer__poll
// with a callback per record that copies the event out (as an app would), or only counts.
//
// usage: events_consumer OBJECT perf|ring copy|count CPU PAGES WAKEUP_BYTES
// Loads OBJECT, attaches perf_out or ring_out, prints "ready", polls until SIGTERM, drains,
// prints one JSON line: received, kernel_lost, cpu_s (this process's CPU time from ready on).
#define _GNU_SOURCE
#include <errno.h>
#include <linux/bpf.h>
#include <linux/perf_event.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

struct event { __u32 pid; __u32 seq; __u64 value; char tag[8]; };

static volatile sig_atomic_t stop;
static unsigned long long received, kernel_lost, checksum;
static int copy_events;

static void on_term(int sig) { (void)sig; stop = 1; }

static inline void take(const void *data)
{
	if (copy_events) {
		struct event e;
		memcpy(&e, data, sizeof(e));
		checksum += e.seq + e.value + (unsigned char)e.tag[0];
	}
	received++;
}

static int on_ring(void *ctx, void *data, size_t size)
{
	(void)ctx; (void)size;
	take(data);
	return 0;
}

// perf_buffer__new_raw: our own attr (watermark wakeups, as the Python readers use)
static enum bpf_perf_event_ret on_perf(void *ctx, int cpu, struct perf_event_header *hdr)
{
	(void)ctx; (void)cpu;
	if (hdr->type == PERF_RECORD_SAMPLE)
		take((const char *)hdr + 12);  // header, u32 raw size, raw data
	else if (hdr->type == PERF_RECORD_LOST)
		kernel_lost += *(const __u64 *)((const char *)hdr + 16);
	return LIBBPF_PERF_EVENT_CONT;
}

static double cpu_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc != 7) {
		fprintf(stderr, "usage: %s OBJECT perf|ring copy|count CPU PAGES WAKEUP_BYTES\n",
			argv[0]);
		return 2;
	}
	int perf = !strcmp(argv[2], "perf");
	copy_events = !strcmp(argv[3], "copy");
	int cpu = atoi(argv[4]), pages = atoi(argv[5]), wakeup = atoi(argv[6]);
	const char *prog_name = perf ? "perf_out" : "ring_out";

	struct bpf_object *obj = bpf_object__open_file(argv[1], NULL);
	if (!obj) { perror("open"); return 1; }
	struct bpf_program *prog;
	bpf_object__for_each_program(prog, obj)
		bpf_program__set_autoload(prog, !strcmp(bpf_program__name(prog), prog_name));
	if (bpf_object__load(obj)) { perror("load"); return 1; }
	int map_fd = bpf_object__find_map_fd_by_name(obj, perf ? "perf_events" : "ring_events");

	if (cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(cpu, &set);
		sched_setaffinity(0, sizeof(set), &set);
	}
	struct ring_buffer *rb = NULL;
	struct perf_buffer *pb = NULL;
	if (perf) {
		struct perf_event_attr attr = {
			.type = PERF_TYPE_SOFTWARE, .size = sizeof(attr),
			.config = PERF_COUNT_SW_BPF_OUTPUT, .sample_period = 1,
			.sample_type = PERF_SAMPLE_RAW,
		};
		if (wakeup) { attr.watermark = 1; attr.wakeup_watermark = wakeup; }
		else attr.wakeup_events = 1;
		pb = perf_buffer__new_raw(map_fd, pages, &attr, on_perf, NULL, NULL);
		if (!pb) { perror("perf_buffer__new_raw"); return 1; }
	} else {
		rb = ring_buffer__new(map_fd, on_ring, NULL, NULL);
		if (!rb) { perror("ring_buffer__new"); return 1; }
	}
	struct bpf_link *link = bpf_program__attach(bpf_object__find_program_by_name(obj, prog_name));
	if (!link) { perror("attach"); return 1; }
	signal(SIGTERM, on_term);
	printf("ready\n");
	fflush(stdout);
	double start = cpu_seconds();
	// With watermark wakeups a lone record raises none: look every 10 ms, as ours do.
	int timeout = perf && wakeup ? 10 : 100;
	while (!stop) {
		int err = perf ? perf_buffer__poll(pb, timeout) : ring_buffer__poll(rb, timeout);
		if (err < 0 && err != -EINTR) { fprintf(stderr, "poll: %d\n", err); return 1; }
	}
	for (int i = 0; i < 3; i++)
		perf ? perf_buffer__consume(pb) : ring_buffer__consume(rb);
	double cpu_s = cpu_seconds() - start;
	printf("{\"received\": %llu, \"kernel_lost\": %llu, \"cpu_s\": %.6f, \"checksum\": %llu}\n",
	       received, kernel_lost, cpu_s, checksum);
	fflush(stdout);
	bpf_link__destroy(link);
	perf ? perf_buffer__free(pb) : ring_buffer__free(rb);
	bpf_object__close(obj);
	return 0;
}
