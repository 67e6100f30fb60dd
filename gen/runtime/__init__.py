"""ebpf_gen.runtime: load generated skeletons through libbpf (libbpf.so.1 via ctypes).

Imports nothing but the standard library: a deployed app needs only this package,
libbpf and the generated files.
"""
