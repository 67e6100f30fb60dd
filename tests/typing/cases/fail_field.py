from probe import probe

ev = probe.Event()
ev.nonexistent  # E: "Event" has no attribute "nonexistent"
ev.pid = "12"  # E: Incompatible types in assignment (expression has type "str", variable has type "int")
name: str = ev.comm  # E: Incompatible types in assignment (expression has type "bytes", variable has type "str")
