// SPDX-License-Identifier: GPL-2.0
/* Golden snippet: a named union inside a struct. */
#include "golden.h"

/* BEGIN TYPES */
union value {
	int i;
	float f;
	char bytes[8];
};
struct cell {
	int type;
	union value v;
};
/* END TYPES */

struct cell g_cell;
