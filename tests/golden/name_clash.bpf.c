// SPDX-License-Identifier: GPL-2.0
/* Golden snippet: class names that clash are numbered; runtime names are avoided. */
#include "golden.h"

/* BEGIN TYPES */
struct foo_bar {
	int a;
};
struct fooBar {
	long b;
};
struct program {
	int c;
};
struct both {
	struct foo_bar x;
	struct fooBar y;
	struct program z;
};
/* END TYPES */

struct both g_both;
