"""Checks shared by the fields that take outside text and JSON: identities' owners, attributes."""

from django.conf import settings
from rest_framework import serializers

from audiences.criteria import text_problem
from audiences.text import has_control_characters


def refuse_control_characters(text: str) -> None:
    """External IDs and event names are sent to partners and written to CSV: no control characters."""
    if has_control_characters(text):
        raise serializers.ValidationError("must not contain control characters")


def json_problem(value, path: str = "", max_depth: int | None = None, depth: int = 1) -> str | None:
    """Why the database cannot store the JSON `value`, naming the key (e.g. `plan.tier`), or None.

    PostgreSQL cannot store the NUL character or an unpaired surrogate in JSON text; nesting deeper than
    `max_depth` is refused before it reaches the database. Other control characters (newlines, tabs) are
    data and are kept.
    """
    if isinstance(value, dict | list):
        if max_depth is not None and depth > max_depth:
            return f"{path or 'the object'} is nested deeper than {max_depth} levels"
        if isinstance(value, dict):
            items = value.items()
        else:
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
        problem = json_problem(item, where, max_depth, depth + 1)
        if problem:
            return problem
    return None


class StorableDictField(serializers.DictField):
    """A JSON object whose text a database can store (no NUL, no unpaired surrogate), at most `max_depth` deep."""

    max_depth: int | None = None

    def to_internal_value(self, data):
        data = super().to_internal_value(data)
        problem = json_problem(data, max_depth=self.max_depth)
        if problem:
            raise serializers.ValidationError(problem)
        return data


class AttributesField(StorableDictField):
    """Profile and event attributes: at most ATTRIBUTES_MAX_DEPTH levels deep."""

    @property
    def max_depth(self):
        return settings.ATTRIBUTES_MAX_DEPTH
