// SPDX-License-Identifier: GPL-2.0
/* Golden snippet: enums of 1, 2, 4 and 8 bytes, and a signed one. */
#include "golden.h"

/* BEGIN TYPES */
enum __attribute__((packed)) tiny { TINY_A = 1, TINY_B = 200 };
enum __attribute__((packed)) small { SMALL_A = 1, SMALL_B = 0x1ff };
enum word { WORD_A, WORD_B = 0x7fffffff };
enum neg { NEG_MINUS = -5, NEG_ZERO = 0, NEG_PLUS = 5 };
enum big { BIG_A = 1, BIG_B = 0x10000000000ULL };
struct enums {
	enum tiny t;
	enum small s;
	enum word w;
	enum neg n;
	enum big b;
};
/* END TYPES */

struct enums g_enums;
