// SPDX-License-Identifier: GPL-2.0
/* Golden snippet: packed struct: _pack_ = 1. */
#include "golden.h"

/* BEGIN TYPES */
struct __attribute__((packed)) wire {
	char kind;
	int len;
	short port;
	long long stamp;
};
/* END TYPES */

struct wire g_wire;
