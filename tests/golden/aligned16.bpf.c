// SPDX-License-Identifier: GPL-2.0
/* Golden snippet: aligned(16): explicit tail padding and padding before it in a parent. */
#include "golden.h"

/* BEGIN TYPES */
struct __attribute__((aligned(16))) block {
	int a;
	char b;
};
struct holder {
	char before;
	struct block blk;
};
/* END TYPES */

struct holder g_holder;
