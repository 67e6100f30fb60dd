// SPDX-License-Identifier: GPL-2.0
/* Golden snippet: structs by value and arrays of structs; dependencies first. */
#include "golden.h"

/* BEGIN TYPES */
struct inner {
	int a;
	short b;
};
struct outer {
	struct inner first;
	long x;
	struct inner many[3];
};
/* END TYPES */

struct outer g_outer;
