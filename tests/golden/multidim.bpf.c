// SPDX-License-Identifier: GPL-2.0
/* Golden snippet: multi-dimensional arrays. */
#include "golden.h"

/* BEGIN TYPES */
struct grid {
	int cells[2][3];
	unsigned long long cube[2][2][2];
	short row[5];
};
/* END TYPES */

struct grid g_grid;
