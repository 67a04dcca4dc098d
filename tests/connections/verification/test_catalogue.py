"""Every hint a connection can show is asserted word for word by a verification test of this folder."""

import ast
from pathlib import Path

from tests.connections.verification.support import CATALOGUE


def asserted_hints() -> set[str]:
    """The catalogue keys named by an `assert_hint(...)` call in any test file of this folder."""
    return {
        node.args[1].value
        for test_file in Path(__file__).parent.glob("test_*.py")
        for node in ast.walk(ast.parse(test_file.read_text()))
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", None) == "assert_hint"
        and isinstance(node.args[1], ast.Constant)
    }


def test_it_asserts_every_hint_in_the_catalogue():
    asserted = asserted_hints()
    assert sorted(set(CATALOGUE) - asserted) == []
    assert sorted(asserted - set(CATALOGUE)) == []
