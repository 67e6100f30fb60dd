// SPDX-License-Identifier: GPL-2.0
/* Golden snippet: an anonymous union member: _anonymous_. */
#include "golden.h"

/* BEGIN TYPES */
struct msg {
	int kind;
	union {
		int code;
		unsigned int flags;
	};
	char tail;
};
/* END TYPES */

struct msg g_msg;
