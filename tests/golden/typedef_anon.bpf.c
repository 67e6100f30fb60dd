// SPDX-License-Identifier: GPL-2.0
/* Golden snippet: a struct reachable only through a typedef takes the typedef's name. */
#include "golden.h"

/* BEGIN TYPES */
typedef struct {
	int x;
	int y;
} point_t;
struct shape {
	point_t origin;
	point_t corners[2];
};
/* END TYPES */

struct shape g_shape;
