// SPDX-License-Identifier: GPL-2.0
/* Golden snippet: const/volatile/restrict members. */
#include "golden.h"

/* BEGIN TYPES */
struct quals {
	const int ci;
	volatile unsigned long long vu;
	const volatile char cv[4];
	int *restrict rp;
};
/* END TYPES */

struct quals g_quals;
