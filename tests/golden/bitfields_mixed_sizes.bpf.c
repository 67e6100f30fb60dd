// SPDX-License-Identifier: GPL-2.0
/* Golden snippet: bitfields of different declared sizes in one run. */
#include "golden.h"

/* BEGIN TYPES */
struct msizes {
	unsigned char a : 3;
	unsigned short b : 9;
	unsigned int c : 20;
};
/* END TYPES */

struct msizes g_msizes;
