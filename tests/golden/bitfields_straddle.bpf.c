// SPDX-License-Identifier: GPL-2.0
/* Golden snippet: packed bitfields that straddle storage units. */
#include "golden.h"

/* BEGIN TYPES */
struct __attribute__((packed)) straddle {
	unsigned char tag;
	unsigned int a : 30;
	unsigned int b : 10;
	unsigned long long c : 50;
};
/* END TYPES */

struct straddle g_straddle;
