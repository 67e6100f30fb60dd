// SPDX-License-Identifier: GPL-2.0
/* Golden snippet: bitfields ctypes lays out like clang: real ctypes bitfields. */
#include "golden.h"

/* BEGIN TYPES */
struct flags {
	unsigned int a : 3;
	unsigned int b : 5;
	unsigned int c : 24;
	unsigned int next;
};
/* END TYPES */

struct flags g_flags;
