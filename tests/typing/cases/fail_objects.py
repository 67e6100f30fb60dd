from probe import probe

with probe.load() as objs:
    objs.variables.targ_pid = 5  # E: Cannot assign to final attribute "targ_pid"
    objs.maps.counts[1] = 2  # E: Invalid index type "int" for "HashMap[CountKey, int]"; expected type "CountKey"
    objs.maps.countz  # E: "Maps" has no attribute "countz"; maybe "counts"?
    objs.programs.on_exit  # E: "Programs" has no attribute "on_exit"
