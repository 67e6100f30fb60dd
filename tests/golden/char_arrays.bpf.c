// SPDX-License-Identifier: GPL-2.0
/* Golden snippet: char[N] becomes c_char * N; other byte arrays stay ints. */
#include "golden.h"

/* BEGIN TYPES */
struct names {
	char comm[16];
	unsigned char raw[4];
	signed char sbytes[3];
	char table[2][8];
};
/* END TYPES */

struct names g_names;
