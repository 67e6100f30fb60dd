"""ebpf-gen: typed Python skeletons for BPF C programs.

The pipeline, one module per step:
compile (clang) -> elf (sections, symbols) -> btf (wire -> decode -> types) ->
objspec (maps, programs, variables) -> source (libclang: what BTF lacks) ->
collect (what to emit) -> naming -> ctypes_fmt (layout) -> render (templates/) -> cli.
The runtime (ebpf_gen.runtime) is apart and imports none of the generator's dependencies.
"""

__version__ = "0.1.0"
