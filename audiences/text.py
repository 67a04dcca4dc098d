"""Checks on text we store and pass on (to partners, to CSV files), shared by the API and the commands."""

import re

# C0 control characters and DEL; one regular-expression scan instead of a Python step per character.
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f]")


def has_control_characters(text: str) -> bool:
    return CONTROL_CHARACTERS.search(text) is not None
