// SPDX-License-Identifier: GPL-2.0
/* Golden snippet: a union as a map key. */
#include "golden.h"

/* BEGIN TYPES */
union addr {
	__u32 v4;
	__u8 v6[16];
	__u16 words[8];
};
/* END TYPES */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8);
	__type(key, union addr);
	__type(value, __u32);
} seen SEC(".maps");
