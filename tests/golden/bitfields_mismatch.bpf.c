// SPDX-License-Identifier: GPL-2.0
/* Golden snippet: the known ctypes disagreement: raw storage plus Bitfield descriptors. */
#include "golden.h"

/* BEGIN TYPES */
struct mixed {
	unsigned int a : 3;
	unsigned int b : 5;
	unsigned char c;
};
/* END TYPES */

struct mixed g_mixed;
