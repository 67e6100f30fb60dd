"""Property tests (hypothesis) where any input must hold: names from an object file are
untrusted text, so every escaping function is checked over arbitrary strings, and the
value codecs over every integer of each C type and past its ends."""

from __future__ import annotations

import ast
import ctypes
import keyword

import pytest
from ebpf_gen import naming
from ebpf_gen.errors import GenError, printable
from ebpf_gen.runtime.codec import Codec
from ebpf_gen.runtime.errors import check_uint
from hypothesis import given, settings
from hypothesis import strategies as st

settings.register_profile("ebpf-gen", max_examples=300, deadline=None, derandomize=True)
settings.load_profile("ebpf-gen")

# Any text, including surrogates' neighbours, controls, bidi overrides and line separators
names = st.text(
    st.characters(min_codepoint=0, max_codepoint=0x10FFFF, blacklist_categories=("Cs",)),
    max_size=40,
)


@given(names)
def test_printable_is_one_printable_line_and_idempotent(text: str) -> None:
    out = printable(text)
    assert out.isprintable() and "\n" not in out and "\x1b" not in out
    assert printable(out) == out
    if text.isprintable():
        assert out == text


@given(names, names)
def test_error_messages_are_one_line(message: str, where: str) -> None:
    text = str(GenError(message, where=where or None))
    assert text.isprintable()
    assert len(text.splitlines()) <= 1


@given(names)
def test_escaped_names_are_identifiers(text: str) -> None:
    for escaped in (naming.field_name(text), naming.attribute_name(text),
                    naming.escape(text, builtins_too=True)):
        assert escaped.isidentifier() and escaped.isascii(), escaped
        assert not keyword.iskeyword(escaped)
        assert not _is_sunder(escaped), escaped  # _fields_, _pack_: ctypes' own


def _is_sunder(name: str) -> bool:
    """enum's and ctypes' reserved _sunder_ names, by enum._is_sunder's definition."""
    return (len(name) > 2 and name[0] == name[-1] == "_" and name[1] != "_"
            and name[-2] != "_")


@given(names)
def test_string_literals_round_trip(text: str) -> None:
    literal = naming.py_str(text)
    assert literal.isascii() and literal.isprintable()
    assert ast.literal_eval(literal) == text
    assert ast.literal_eval('"""' + naming.doc_text(text) + ' """') == text + " "


_INTS = [(ctypes.c_uint8, 8, False), (ctypes.c_int8, 8, True), (ctypes.c_uint16, 16, False),
         (ctypes.c_int16, 16, True), (ctypes.c_uint32, 32, False), (ctypes.c_int32, 32, True),
         (ctypes.c_uint64, 64, False), (ctypes.c_int64, 64, True)]


@pytest.mark.parametrize(("ctype", "bits", "signed"), _INTS,
                         ids=[c.__name__ for c, _, _ in _INTS])
@given(value=st.integers(min_value=-(2**70), max_value=2**70))
def test_int_codec_round_trips_or_refuses(ctype: type, bits: int, signed: bool,
                                          value: int) -> None:
    codec = Codec(ctype, bits // 8, "map 'm': value")
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    buf = codec.buffer()
    if lo <= value <= hi:
        codec.encode(value, buf)
        assert codec.decode(buf) == value
    else:
        with pytest.raises(ValueError, match=r"^map 'm': value: -?\d+ out of range"):
            codec.encode(value, buf)


@given(st.integers(min_value=-(2**70), max_value=2**70), st.sampled_from([32, 64]))
def test_check_uint_never_masks(value: int, bits: int) -> None:
    if 0 <= value < 1 << bits:
        assert check_uint("n", value, bits) == value
    else:
        with pytest.raises(OverflowError):
            check_uint("n", value, bits)
