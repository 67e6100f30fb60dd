// SPDX-License-Identifier: GPL-2.0
/* Golden snippet: rodata, data, bss and custom-section globals. */
#include "golden.h"

/* BEGIN TYPES */
struct config {
	__u32 level;
	char tag[8];
};
/* END TYPES */

const volatile struct config cfg = { .level = 1 };
const volatile __u64 threshold = 10;
__u64 hits = 1;
__u32 misses;
char buffer[32];
__u64 custom_counter SEC(".data.custom") = 3;
const volatile int limits[4] SEC(".rodata.limits") = { 1, 2, 3, 4 };
