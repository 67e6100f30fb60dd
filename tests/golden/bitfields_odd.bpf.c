// SPDX-License-Identifier: GPL-2.0
/* Golden snippet: bitfields at odd offsets sharing units with plain members. */
#include "golden.h"

/* BEGIN TYPES */
struct odd {
	char x;
	unsigned int a : 7;
	unsigned int b : 9;
	short y;
	unsigned long long c : 33;
	unsigned long long d : 2;
};
/* END TYPES */

struct odd g_odd;
