"""Checks on text we store and pass on (to partners, to CSV files), shared by the API and the commands."""


def has_control_characters(text: str) -> bool:
    return any(ord(ch) < 32 or ord(ch) == 127 for ch in text)
