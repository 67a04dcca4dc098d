"""Seams through which an app adds to another app's admin pages without reaching into its ModelAdmin.

The owning admin declares `seams = AdminSeams()` and mixes in `SeamedAdmin`; an app built on the model
fills the seams in its AppConfig.ready() (connections adds its inline to the audience and output pages, and
the pages that explain why a connected audience or output cannot be deleted). Reading the owning admin shows
every place another app can change its pages.
"""

from django.contrib import admin


class AdminSeams:
    def __init__(self):
        self.inlines: list[type[admin.options.InlineModelAdmin]] = []
        self.delete_confirmation_template: str | None = None
        self.delete_selected_confirmation_template: str | None = None

    def add_inline(self, inline) -> None:
        """Show `inline` on the model's change page, after the owning admin's own inlines."""
        if inline not in self.inlines:
            self.inlines.append(inline)

    def explain_protected_deletes(self, one: str, selected: str) -> None:
        """The delete confirmation pages (one object, a selection), for an app whose rows protect the model's."""
        self.delete_confirmation_template = one
        self.delete_selected_confirmation_template = selected


class SeamedAdmin:
    """ModelAdmin mixin: what other apps registered in `seams` joins the admin's own inlines and pages."""

    seams: AdminSeams

    def get_inlines(self, request, obj):
        return [*super().get_inlines(request, obj), *self.seams.inlines]

    @property
    def delete_confirmation_template(self):
        return self.seams.delete_confirmation_template

    @property
    def delete_selected_confirmation_template(self):
        return self.seams.delete_selected_confirmation_template
