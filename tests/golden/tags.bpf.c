// SPDX-License-Identifier: GPL-2.0
/* Golden snippet: BTF decl and type tags (btf_decl_tag, btf_type_tag), as newer clangs
 * emit them and the kernel's __user/__rcu/__percpu use them: tags say nothing about layout,
 * so the module is the one an untagged source gives, on clang 14 and 19 alike. */
#include "golden.h"

/* BEGIN TYPES */
#ifdef __clang__ /* the layout check compiles this region with gcc, which has no BTF tags */
#define __tag(x) __attribute__((btf_decl_tag(x)))
#define __user __attribute__((btf_type_tag("user")))
#else
#define __tag(x)
#define __user
#endif
struct tagged_args {
	const char __user *filename __tag("arg");
	int __user *flags;
	long count __tag("counter");
} __tag("args");
/* END TYPES */

struct tagged_args g_tagged_args;
