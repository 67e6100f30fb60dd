// SPDX-License-Identifier: GPL-2.0
/* Golden snippet: a named struct behind a typedef keeps its class; both names in C_TYPES. */
#include "golden.h"

/* BEGIN TYPES */
struct item {
	__u32 id;
	__u64 weight;
};
typedef struct item item_t;
/* END TYPES */

item_t g_item;
