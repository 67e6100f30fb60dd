// SPDX-License-Identifier: GPL-2.0
/* Golden snippet: pointers become c_uint64 with the C type in a comment. */
#include "golden.h"

/* BEGIN TYPES */
struct node;
typedef int (*callback_t)(int);
struct node {
	struct node *next;
	void *data;
	const char *name;
	char *argv[4];
	callback_t cb;
	int depth;
};
/* END TYPES */

struct node g_node;
