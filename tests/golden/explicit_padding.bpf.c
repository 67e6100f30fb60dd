// SPDX-License-Identifier: GPL-2.0
/* Golden snippet: over-aligned members need _pad_N fields. */
#include "golden.h"

/* BEGIN TYPES */
struct spaced {
	char a;
	int b __attribute__((aligned(8)));
	char c;
	long long d __attribute__((aligned(16)));
};
/* END TYPES */

struct spaced g_spaced;
