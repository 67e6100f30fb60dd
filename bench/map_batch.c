/* The C reference for bench/map_ops.py: libbpf's batch calls on a map the bench made.
 *
 * usage: map_batch MAP_ID N ROUNDS  (a HASH of N u32 -> u64 entries)
 * prints {"lookup_batch": entries/s, "update_batch": entries/s}, best of ROUNDS, where one
 * round drains every entry with bpf_map_lookup_batch (one call for the whole map, as
 * ebpf_gen's items() does for a map this size) and rewrites them with bpf_map_update_batch.
 */
#include <bpf/bpf.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: %s MAP_ID N ROUNDS\n", argv[0]);
		return 2;
	}
	uint32_t id = strtoul(argv[1], NULL, 0), n = strtoul(argv[2], NULL, 0);
	int rounds = atoi(argv[3]);
	int fd = bpf_map_get_fd_by_id(id);
	if (fd < 0) {
		fprintf(stderr, "map id %u: %d\n", id, fd);
		return 1;
	}
	uint32_t *keys = calloc(n, sizeof(*keys));
	uint64_t *values = calloc(n, sizeof(*values));
	if (!keys || !values)
		return 1;
	LIBBPF_OPTS(bpf_map_batch_opts, opts);
	double best_lookup = 0, best_update = 0;
	for (int r = 0; r < rounds; r++) {
		uint64_t in = 0, out = 0;
		uint32_t total = 0;
		double t = now();
		for (int first = 1;; first = 0) {
			uint32_t count = n - total;
			int err = bpf_map_lookup_batch(fd, first ? NULL : &in, &out, keys + total,
						       values + total, &count, &opts);
			total += count;
			if (err == -ENOENT || total >= n)
				break;
			if (err) {
				fprintf(stderr, "lookup_batch: %d\n", err);
				return 1;
			}
			in = out;
		}
		double dt = now() - t;
		if (total != n) {
			fprintf(stderr, "lookup_batch read %u of %u entries\n", total, n);
			return 1;
		}
		if (n / dt > best_lookup)
			best_lookup = n / dt;
		for (uint32_t i = 0; i < n; i++)
			values[i] += 1;
		uint32_t count = n;
		t = now();
		int err = bpf_map_update_batch(fd, keys, values, &count, &opts);
		dt = now() - t;
		if (err || count != n) {
			fprintf(stderr, "update_batch: %d (%u of %u)\n", err, count, n);
			return 1;
		}
		if (n / dt > best_update)
			best_update = n / dt;
	}
	printf("{\"lookup_batch\": %.0f, \"update_batch\": %.0f}\n", best_lookup, best_update);
	return 0;
}
