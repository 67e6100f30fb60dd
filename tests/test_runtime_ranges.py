"""Every integer a user passes to the runtime is range-checked against its C type, never
masked by ctypes (issue 8): ``max_entries=2**32 + 4`` once loaded 4 entries and
``flags=2**64 + 1`` became BPF_NOEXIST. And the object file next to a module must be a
regular file: a FIFO in its place once made ``load()`` block."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest
from ebpf_gen.runtime import ObjectFile, ObjectFileError, ObjectsBase, ObjectSpec
from ebpf_gen.runtime.errors import check_uint

from generated import hello_map


def test_check_uint() -> None:
    assert check_uint("x", 2**32 - 1, 32) == 2**32 - 1
    for bad in (2**32, -1, 2**32 + 4):
        with pytest.raises(OverflowError, match=rf"^x: {bad} out of range for u32"):
            check_uint("x", bad, 32)
    with pytest.raises(TypeError, match="x: expected an int, got float"):
        check_uint("x", 1.0, 32)
    with pytest.raises(TypeError, match="got bool"):
        check_uint("x", True, 64)


def test_max_entries_out_of_u32_is_refused_before_loading() -> None:
    # open() parses in user space only: no bpf() needed to see the check
    opened = hello_map.OBJECT.open()
    try:
        with pytest.raises(OverflowError, match=r"max_entries\['counter_table'\]: 4294967300"):
            opened.set_max_entries("counter_table", 2**32 + 4)
        with pytest.raises(OverflowError, match="-1 out of range for u32"):
            opened.set_max_entries("counter_table", -1)
    finally:
        opened.close()
    with pytest.raises(OverflowError, match="counter_table"):
        hello_map.load(max_entries={"counter_table": 2**32 + 4})
    with pytest.raises(OverflowError, match=r"hello_map: log_level: 4294967297 out of range"):
        hello_map.open(log_level=2**32 + 1)


def _fifo_spec(tmp_path: Path) -> ObjectSpec[ObjectsBase]:
    os.mkfifo(tmp_path / "x_bpfel.o")
    os.mkfifo(tmp_path / "x_bpfeb.o")
    return ObjectSpec(
        name="x", package=None, directory=tmp_path, objects=ObjectsBase,
        files={"little": ObjectFile("x_bpfel.o", sha256="0" * 64),
               "big": ObjectFile("x_bpfeb.o", sha256="0" * 64)},
    )


def test_object_file_that_is_a_fifo_does_not_block(tmp_path: Path) -> None:
    spec = _fifo_spec(tmp_path)
    outcome: list[BaseException] = []

    def load() -> None:
        try:
            spec.load()
        except BaseException as e:
            outcome.append(e)

    t = threading.Thread(target=load, daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "load() blocked on a FIFO"
    assert isinstance(outcome[0], ObjectFileError), outcome
    assert "not a regular file" in str(outcome[0])


@pytest.mark.kernel
def test_update_flags_and_values_out_of_range() -> None:
    from tests.conftest import require_kernel

    require_kernel()
    with hello_map.load() as o:
        m: Any = o.maps.counter_table
        for flags in (2**70, 2**64 + 1, -1):
            with pytest.raises(OverflowError, match=rf"update flags: {flags} out of range"):
                m.update(1, 1, flags=flags)
        assert 1 not in m  # nothing was written on the way
        m.update(1, 1, flags=0)
        for key in (2**64, -1):
            with pytest.raises(ValueError, match=rf"key: {key} out of range"):
                m[key] = 1
        with pytest.raises(ValueError, match=rf"value: {2**64} out of range"):
            m[2] = 2**64
        assert dict(m.items()) == {1: 1}
