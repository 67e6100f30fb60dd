// SPDX-License-Identifier: GPL-2.0
/* Golden snippet: bitfields inside a union share one storage field. */
#include "golden.h"

/* BEGIN TYPES */
union packed_bits {
	unsigned int a : 3;
	unsigned int b : 12;
	int whole;
};
struct with_bits {
	union packed_bits u;
	unsigned short s : 9;
	unsigned short t : 7;
};
/* END TYPES */

struct with_bits g_with_bits;
