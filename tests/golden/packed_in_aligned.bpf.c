// SPDX-License-Identifier: GPL-2.0
/* Golden snippet: a packed struct inside a naturally aligned one. */
#include "golden.h"

/* BEGIN TYPES */
struct __attribute__((packed)) inner_p {
	char c;
	int v;
};
struct outer_a {
	char x;
	struct inner_p p;
	int y;
};
/* END TYPES */

struct outer_a g_outer_a;
