// SPDX-License-Identifier: GPL-2.0
/* Golden snippet: enumerator names that Enum reserves, and an anonymous enum member. */
#include "golden.h"

/* BEGIN TYPES */
enum kind { _KIND_HIDDEN = 0, name = 1, value = 2, KIND_OK = 3 };
struct tagged {
	enum kind k;
	enum { ANON_X = 7, ANON_Y = 8 } inline_kind;
};
/* END TYPES */

struct tagged g_tagged;
