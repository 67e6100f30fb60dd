"""BTF, layered like cilium/ebpf's btf package: wire (on-disk structs, Kind) ->
decode (bytes to model) -> types (immutable NamedTuple records) -> raw (bpftool's text form)."""
