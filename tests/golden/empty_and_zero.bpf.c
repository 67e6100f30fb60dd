// SPDX-License-Identifier: GPL-2.0
/* Golden snippet: an empty struct and a zero-length array. */
#include "golden.h"

/* BEGIN TYPES */
struct empty {
};
struct with_empty {
	int a;
	struct empty e;
	int b;
	int zero[0];
};
/* END TYPES */

struct with_empty g_with_empty;
