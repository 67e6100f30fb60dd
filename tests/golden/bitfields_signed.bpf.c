// SPDX-License-Identifier: GPL-2.0
/* Golden snippet: signed, enum and bool bitfields. */
#include "golden.h"

/* BEGIN TYPES */
enum mode { MODE_OFF = -1, MODE_ON = 1 };
struct sflags {
	int a : 3;
	signed char b : 4;
	enum mode m : 2;
	_Bool on : 1;
};
/* END TYPES */

struct sflags g_sflags;
