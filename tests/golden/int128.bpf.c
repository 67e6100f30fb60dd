// SPDX-License-Identifier: GPL-2.0
/* Golden snippet: 128-bit integers as c_uint8 * 16, aligned by explicit padding. */
#include "golden.h"

/* BEGIN TYPES */
struct wide {
	char tag;
	__int128 big;
	unsigned __int128 ubig;
};
/* END TYPES */

struct wide g_wide;
