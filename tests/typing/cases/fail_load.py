from probe import probe

probe.load(constants={"targ_pidd": 1})  # E: Extra key "targ_pidd" for TypedDict "Constants"
probe.load(constants={"targ_pid": "1"})  # E: Incompatible types (expression has type "str", TypedDict item "targ_pid" has type "int")
probe.load(autoload={"on_exit": True})  # E: Extra key "on_exit" for TypedDict "Autoload"
probe.load(max_entries={"countz": 8})  # E: Extra key "countz" for TypedDict "MaxEntries"
probe.load(max_entries={"counts": "8"})  # E: Incompatible types (expression has type "str", TypedDict item "counts" has type "int")
