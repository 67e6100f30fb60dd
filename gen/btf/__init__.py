"""BTF, layered like cilium/ebpf's btf package: wire (on-disk structs, Kind) ->
decode (bytes to model) -> types (frozen dataclasses) -> raw (bpftool's text form)."""
