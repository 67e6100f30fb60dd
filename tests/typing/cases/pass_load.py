# load() takes the object's own names with their types.
from typing import assert_type

from ebpf_gen.runtime import HashMap, Program, RingBuf
from probe import probe

with probe.load(
    constants={"targ_pid": 42, "targ_comm": b"bash"},
    max_entries={"counts": 1024},
    autoload={"on_exec": True},
) as objs:
    assert_type(objs.maps.counts, HashMap[probe.CountKey, int])
    assert_type(objs.maps.events, RingBuf[probe.Event])
    assert_type(objs.programs.on_exec, Program)
    assert_type(objs.variables.targ_pid, int)
    assert_type(objs.variables.seen, int)
    objs.variables.seen = 0
    n: int = objs.maps.counts[probe.CountKey(pid=1, comm=b"sh")]
