# Struct members are typed to the field; records print, compare and convert.
from typing import Any, assert_type

from probe import probe

ev = probe.Event()
assert_type(ev.pid, int)
assert_type(ev.kind, probe.EventKind)
assert_type(ev.comm, bytes)
assert_type(ev.key, probe.CountKey)
assert_type(ev.key.comm, bytes)
assert_type(ev.args[0], int)
assert_type(ev.flag, int)
assert_type(ev._asdict(), dict[str, Any])
ev.pid = 5
ev.kind = probe.EventKind.EXIT
ev.comm = b"bash"
same: bool = ev == probe.Event()
