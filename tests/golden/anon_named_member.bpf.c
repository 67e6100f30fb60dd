// SPDX-License-Identifier: GPL-2.0
/* Golden snippet: anonymous types in named members are named after the member. */
#include "golden.h"

/* BEGIN TYPES */
struct event {
	struct {
		int x;
		int y;
	} pos;
	union {
		int i;
		float f;
	} val;
};
/* END TYPES */

struct event g_event;
