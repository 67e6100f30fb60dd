// SPDX-License-Identifier: GPL-2.0
/* Golden snippet: enums whose signedness and 64-bit values clang 14's BTF loses (it writes
 * every enum unsigned and 32-bit) and the source restores: an anonymous enum nested in a
 * struct, a negative 64-bit enum and a bitfield of a signed enum. clang 19 records all of
 * this in BTF (signed ENUM, ENUM64); both toolchains must give this same text. */
#include "golden.h"

/* BEGIN TYPES */
enum wide { WIDE_MINUS = -2, WIDE_BIG = 0x100000000LL };
enum flags64 { F64_LOW = 1, F64_TOP = 0x8000000000000000ULL };
struct tagged {
	enum { TAG_NONE = -1, TAG_ONE = 1 } tag;
	enum wide w;
	enum flags64 f;
	enum wide small : 3;
};
/* END TYPES */

struct tagged g_tagged;
