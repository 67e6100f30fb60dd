// SPDX-License-Identifier: GPL-2.0
/* Golden snippet: C's natural padding: ctypes finds it alone, no _pad_ field. */
#include "golden.h"

/* BEGIN TYPES */
struct holes {
	char a;
	int b;
	char c;
	long d;
	short e;
};
/* END TYPES */

struct holes g_holes;
