/* Shared by the golden snippets: the BPF part. Each snippet keeps its types between the
 * BEGIN TYPES / END TYPES markers, in plain C that the host gcc also compiles. */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";
