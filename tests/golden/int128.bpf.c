// SPDX-License-Identifier: GPL-2.0
/* Golden snippet: 128-bit integers read as int over 16 raw bytes, aligned by explicit padding. */
#include "golden.h"

/* BEGIN TYPES */
struct wide {
	char tag;
	__int128 big;
	unsigned __int128 ubig;
};
/* END TYPES */

struct wide g_wide;
