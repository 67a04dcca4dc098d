"""Checks shared by the fields that take outside text and JSON: identities' owners, attributes."""

from django.conf import settings
from rest_framework import serializers

from audiences.criteria import text_problem


def has_control_characters(text: str) -> bool:
    return any(ord(ch) < 32 or ord(ch) == 127 for ch in text)


def refuse_control_characters(text: str) -> None:
    """External IDs and event names are sent to partners and written to CSV: no control characters."""
    if has_control_characters(text):
        raise serializers.ValidationError("must not contain control characters")


def attributes_problem(value, path: str, depth: int = 1) -> str | None:
    """Why `value` cannot be stored as attributes, naming the key (e.g. `plan.tier`), or None.

    PostgreSQL cannot store the NUL character or an unpaired surrogate in JSON text, and deep nesting is
    refused before it reaches the database; other control characters (newlines, tabs) are data and are kept.
    """
    if isinstance(value, dict):
        if depth > settings.ATTRIBUTES_MAX_DEPTH:
            return f"{path or 'attributes'} is nested deeper than {settings.ATTRIBUTES_MAX_DEPTH} levels"
        items = value.items()
    elif isinstance(value, list):
        if depth > settings.ATTRIBUTES_MAX_DEPTH:
            return f"{path or 'attributes'} is nested deeper than {settings.ATTRIBUTES_MAX_DEPTH} levels"
        items = ((f"[{index}]", item) for index, item in enumerate(value))
    elif isinstance(value, str):
        problem = text_problem(value)
        return f"{path} {problem}" if problem else None
    else:
        return None
    for key, item in items:
        problem = text_problem(key)
        if problem:
            return f"the key {key!r} {problem}"
        where = f"{path}{key}" if key.startswith("[") else (f"{path}.{key}" if path else key)
        problem = attributes_problem(item, where, depth + 1)
        if problem:
            return problem
    return None


class AttributesField(serializers.DictField):
    """A JSON object of attributes, at most ATTRIBUTES_MAX_DEPTH levels deep, of text a database can store."""

    def to_internal_value(self, data):
        data = super().to_internal_value(data)
        problem = attributes_problem(data, "")
        if problem:
            raise serializers.ValidationError(problem)
        return data
