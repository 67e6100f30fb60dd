// SPDX-License-Identifier: GPL-2.0
/* Golden snippet: every integer width and signedness, bool, float, double. */
#include "golden.h"

/* BEGIN TYPES */
struct scalars {
	char c;
	signed char sc;
	unsigned char uc;
	short s;
	unsigned short us;
	int i;
	unsigned int ui;
	long l;
	unsigned long ul;
	long long ll;
	unsigned long long ull;
	_Bool b;
	float f;
	double d;
};
/* END TYPES */

struct scalars g_scalars;
