// SPDX-License-Identifier: GPL-2.0
/* Golden snippet: fields, globals, maps and programs named like Python keywords or builtins. */
#include "golden.h"

/* BEGIN TYPES */
struct py_words {
	int class;
	int from;
	int def;
	int lambda;
	int type;
	int id;
	int _fields_;
	int None;
};
/* END TYPES */

struct py_words g_words;
int class;
int print;

/* Maps and programs escape too; their specs carry the attribute (attr="lambda_"). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} lambda SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_getppid")
int type(void *ctx)
{
	return 0;
}
