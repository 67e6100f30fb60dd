// SPDX-License-Identifier: GPL-2.0
/* Golden snippet: fields and globals named like Python keywords or builtins. */
#include "golden.h"

/* BEGIN TYPES */
struct py_words {
	int class;
	int from;
	int def;
	int lambda;
	int type;
	int id;
	int _fields_;
	int None;
};
/* END TYPES */

struct py_words g_words;
int class;
int print;
