// SPDX-License-Identifier: GPL-2.0
/* Golden snippet: anonymous unions holding anonymous and named-member structs. */
#include "golden.h"

/* BEGIN TYPES */
struct deep {
	int head;
	union {
		struct {
			short lo;
			short hi;
		};
		int whole;
		struct {
			char b0, b1, b2, b3;
		} bytes;
	};
	union {
		long alt;
	};
};
/* END TYPES */

struct deep g_deep;
