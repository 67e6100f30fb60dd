// SPDX-License-Identifier: GPL-2.0
/* Golden snippet: typedef chains collapse to the scalar; C_TYPES keeps the names. */
#include "golden.h"

/* BEGIN TYPES */
typedef unsigned int my_u32;
typedef my_u32 my_id;
typedef const my_id cid_t;
struct ids {
	my_u32 a;
	my_id b;
	cid_t c;
	volatile my_id d;
};
/* END TYPES */

struct ids g_ids;
my_id g_one_id;
