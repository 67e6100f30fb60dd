"""naming: the one place names are decided; untrusted input never becomes code."""

from __future__ import annotations

import ast

import pytest
from ebpf_gen import naming
from ebpf_gen.errors import GenError


@pytest.mark.parametrize(
    ("c_name", "expected"),
    [
        ("data_t", "DataT"),
        ("task_struct", "TaskStruct"),
        ("XDPMd", "XDPMd"),
        ("__u32", "U32"),
        ("fooBar", "FooBar"),
        ("9lives", "T9lives"),
        ("___", "Anon"),
        ("x; import os", "XImportOs"),
    ],
)
def test_cap_words(c_name: str, expected: str) -> None:
    assert naming.cap_words(c_name) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("pid", "pid"),
        ("class", "class_"),
        ("from", "from_"),
        ("None", "None_"),
        ("_fields_", "_fields__"),
        ("a b", "a_b"),
        ("1x", "_1x"),
        ("", "_"),
        ("é", "_xe9"),
        ('x"); import os; ("', "x____import_os____"),
    ],
)
def test_field_names_are_safe_identifiers(name: str, expected: str) -> None:
    out = naming.field_name(name)
    assert out == expected
    assert out.isidentifier()


def test_builtins_escaped_only_where_they_would_shadow() -> None:
    assert naming.field_name("id") == "id"  # a ctypes field: attribute access only
    assert naming.attribute_name("id") == "id_"  # a class-body name on Variables
    assert naming.attribute_name("Program") == "Program_"  # a runtime import
    assert naming.attribute_name("counter") == "counter"


def test_enum_members() -> None:
    assert naming.enum_member("_HIDDEN") == "V_HIDDEN"
    assert naming.enum_member("name") == "name_"
    assert naming.enum_member("A") == "A"


def test_anonymous_padding_storage_section_names() -> None:
    assert naming.anonymous_class("Outer", "u", 0) == "OuterU"
    assert naming.anonymous_class("Outer", None, 0) == "Outer_Anon0"
    assert naming.anonymous_class("Outer", "my_val", 3) == "OuterMyVal"
    assert naming.padding(12) == "_pad_12"
    assert naming.bitfield_storage(4) == "_bitfield_4"
    assert naming.section_name(".data.foo") == "data_foo"
    assert naming.section_name(".rodata") == "rodata"
    assert naming.section_name(".bss") == "bss"


def test_name_table_numbers_deterministically_and_claims_fail_with_hint() -> None:
    t = naming.NameTable({"Maps"})
    assert [t.take("Foo"), t.take("Foo"), t.take("Foo"), t.take("Maps")] == [
        "Foo",
        "Foo_1",
        "Foo_2",
        "Maps_1",
    ]
    t.claim("bar", what="member bar", hint="rename one")
    with pytest.raises(GenError, match=r"member bar.*already used.*rename one"):
        t.claim("bar", what="member bar", hint="rename one")


NASTY = [
    "x; import os",
    "quote\"s and 'single'",
    'triple """ quotes',
    "new\nline",
    "back\\slash",
    "tab\tand\x00nul",
    "unicode é ☃ \U0001f600",
    "'''",
]


@pytest.mark.parametrize("text", NASTY)
def test_py_str_round_trips(text: str) -> None:
    literal = naming.py_str(text)
    assert "\n" not in literal
    tree = ast.parse(literal, mode="eval")
    assert isinstance(tree.body, ast.Constant)
    assert tree.body.value == text


@pytest.mark.parametrize("text", NASTY)
def test_doc_text_is_safe_in_a_docstring(text: str) -> None:
    source = f'"""{naming.doc_text(text)}."""\n'
    tree = ast.parse(source)
    assert len(tree.body) == 1  # still one docstring, nothing escaped out of it
    node = tree.body[0]
    assert isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    assert node.value.value == text + "."
