"""Every hint a connection can show is asserted word for word by a verification test of this folder.

The partners' hints are read from the registry, so a new partner's are checked here without editing this file.
"""

import ast
from pathlib import Path

import pytest

from connections.hints import HINTS
from outputs.partners import registry
from tests.connections.verification.support import CATALOGUE, partner_hints


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


def test_it_asserts_every_shared_hint():
    assert sorted(set(HINTS) - asserted_hints()) == []


@pytest.mark.parametrize("partner", registry.all_partners(), ids=lambda p: p.slug)
def test_it_asserts_every_hint_of_each_partner(partner):
    hints = {f"{partner.slug}:{key}" for key in partner_hints(partner)}

    assert sorted(hints - asserted_hints()) == []


def test_it_asserts_no_hint_the_catalogue_does_not_have():
    assert sorted(asserted_hints() - set(CATALOGUE)) == []
