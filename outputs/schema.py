"""Turns a partner's declared settings into validation, form fields and a JSON description.

One implementation serves the admin form, the API serializer and the catalog,
so adding a partner never means writing a new form.
"""

import re

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.utils.html import escape, format_html
from django.utils.safestring import mark_safe

from outputs import netguard
from outputs.partners.base import Setting

_url = URLValidator(schemes=["http", "https"])
# An address in a sentence: it ends before the sentence's own punctuation, "(https://…/)." included.
_ADDRESS = re.compile(r"https?://[^\s()<>\"']*[^\s()<>\"'.,;:!?]")


def linked(text: str):
    """The text, escaped, with each http(s) address a link that opens beside the form (Django's urlize drops
    the full stop after "(https://…/)")."""
    parts, end = [], 0
    for match in _ADDRESS.finditer(text):
        url = match.group()
        parts += [
            escape(text[end : match.start()]),
            format_html('<a href="{}" target="_blank" rel="noopener">{}</a>', url, url),
        ]
        end = match.end()
    return mark_safe("".join([*parts, escape(text[end:])]))  # every part is escaped or built by format_html


def clean_value(setting: Setting, value):
    """The cleaned value, or raise ValueError with a sentence naming what is wrong."""
    if value in (None, "") or value == []:
        if setting.required:
            raise ValueError("This setting is required.")
        return setting.default
    if setting.kind == "bool":
        if isinstance(value, str) and value.lower() in ("true", "false", "on", "off", "1", "0"):
            value = value.lower() in ("true", "on", "1")
        if not isinstance(value, bool):
            raise ValueError("Must be true or false.")
    elif setting.kind == "int":
        try:
            value = int(value)
        except (TypeError, ValueError):
            raise ValueError("Must be a whole number.") from None
    elif setting.kind == "choice":
        allowed = [c for c, _ in setting.choices]
        if value not in allowed:
            raise ValueError(f"Must be one of {', '.join(allowed)}.")
    elif setting.kind == "multichoice":
        allowed = [c for c, _ in setting.choices]
        if not isinstance(value, list) or any(v not in allowed for v in value):
            raise ValueError(f"Must be a list of values from {', '.join(allowed)}.")
        value = [v for v in allowed if v in value]
    else:
        if not isinstance(value, str):
            raise ValueError("Must be text.")
        value = value.strip()
        if setting.kind == "url":
            try:
                _url(value)
            except ValidationError:
                raise ValueError("Must be an http:// or https:// URL.") from None
    if setting.validate:
        problem = setting.validate(value)
        if problem:
            raise ValueError(problem)
    if setting.kind == "url":
        # Every URL a person types is a place our server will send to: only public addresses (SSRF).
        problem = netguard.refusal(value)
        if problem:
            raise ValueError(problem)
    return value


def clean_settings(declared, data: dict, *, existing: dict | None = None, partial: bool = False) -> dict:
    """Validate `data` against `declared` settings; raise ValidationError({name: [sentence]}).

    `existing` holds the stored values: a secret that is left out keeps its
    stored value, so an API client or form never has to send it again.
    """
    data = dict(data or {})
    existing = existing or {}
    names = {s.name for s in declared}
    errors = {name: ["Unknown setting."] for name in data if name not in names}
    cleaned = {}
    for setting in declared:
        if setting.name not in data or (setting.secret and data.get(setting.name) in (None, "")):
            if setting.name in existing:
                cleaned[setting.name] = existing[setting.name]
                continue
            if partial:
                continue
        try:
            cleaned[setting.name] = clean_value(setting, data.get(setting.name))
        except ValueError as exc:
            errors[setting.name] = [str(exc)]
    if errors:
        raise ValidationError(errors)
    return cleaned


def split_secrets(declared, values: dict) -> tuple[dict, dict]:
    secret_names = {s.name for s in declared if s.secret}
    plain = {k: v for k, v in values.items() if k not in secret_names}
    secret = {k: v for k, v in values.items() if k in secret_names}
    return plain, secret


def describe(declared) -> list[dict]:
    """JSON description for the partner catalog."""
    return [
        {
            "name": s.name,
            "label": s.label,
            "help": s.help,
            "type": s.kind,
            "required": s.required,
            "secret": s.secret,
            "destination": s.destination,
            "default": s.default,
            "choices": [c for c, _ in s.choices] or None,
        }
        for s in declared
    ]


def form_field(setting: Setting, *, secret_is_set: bool = False) -> forms.Field:
    # The declared default is the field's initial value: what a person sees is what applies when they save.
    # The help text's addresses (a partner's documentation) are links.
    help_text = linked(setting.help)
    common = {"label": setting.label, "help_text": help_text, "required": False, "initial": setting.default}
    if setting.kind == "secret":
        placeholder = "•••••••• (set — type a new value to replace it)" if secret_is_set else ""
        return forms.CharField(
            widget=forms.PasswordInput(render_value=False, attrs={"placeholder": placeholder, "autocomplete": "off"}),
            **common,
        )
    if setting.kind == "bool":
        return forms.BooleanField(**common)
    if setting.kind == "choice":
        blank = [("", "---------")] if setting.default is None else []
        return forms.ChoiceField(choices=[*blank, *setting.choices], **common)
    if setting.kind == "multichoice":
        return forms.MultipleChoiceField(choices=setting.choices, widget=forms.CheckboxSelectMultiple, **common)
    if setting.kind == "int":
        return forms.IntegerField(**common)
    return forms.CharField(**common)
