// SPDX-License-Identifier: GPL-2.0
/* Golden snippet: flexible array member: a zero-length array at the end. */
#include "golden.h"

/* BEGIN TYPES */
struct record {
	unsigned int len;
	unsigned short kind;
	char data[];
};
/* END TYPES */

struct record g_record;
