"""An admin column or read-only field named like a model field shows the field, never the admin's method of
that name (Django looks the field up first): such a method would be dead code showing stale facts."""

from django.contrib import admin
from django.core.exceptions import FieldDoesNotExist


def test_no_admin_method_is_hidden_by_a_model_field_of_the_same_name():
    hidden = []
    for model, model_admin in admin.site._registry.items():
        for name in [*model_admin.list_display, *model_admin.readonly_fields]:
            if not isinstance(name, str) or not callable(getattr(type(model_admin), name, None)):
                continue
            try:
                model._meta.get_field(name)
            except FieldDoesNotExist:
                continue
            hidden.append(f"{type(model_admin).__name__}.{name}")
    assert hidden == []
