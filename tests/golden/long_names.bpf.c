// SPDX-License-Identifier: GPL-2.0
/* Golden snippet: long names: lines wrap like ruff format. */
#include "golden.h"

/* BEGIN TYPES */
struct a_rather_long_structure_name_to_force_line_wrapping_in_the_generated_module {
	unsigned long long a_long_member_name_that_makes_the_offsets_dict_wrap;
	unsigned long long another_long_member_name_that_makes_it_wrap_twice;
	char a_character_array_with_a_long_name[48];
};
/* END TYPES */

struct a_rather_long_structure_name_to_force_line_wrapping_in_the_generated_module g_long;
