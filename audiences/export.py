"""CSV download of an audience: every member with its identities, streamed."""

import csv
import re

from django.db.models import Prefetch
from django.http import StreamingHttpResponse
from django.utils.text import slugify

from audiences import variants
from audiences.models import Identity, Membership
from identities import IdentityType

HEADER = ["external_id", "member_since", *IdentityType.values]

# A spreadsheet runs a cell starting with one of these as a formula (CSV injection, OWASP): such a cell is
# written with a leading apostrophe, which spreadsheets show as text. Phone numbers in E.164 ("+4915…",
# several joined by " | ") hold only digits, cannot carry a formula, and are written as they are.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
PHONE_NUMBERS = re.compile(r"\+\d+( \| \+\d+)*")


def defuse(cell: str) -> str:
    if cell.startswith(FORMULA_STARTS) and not PHONE_NUMBERS.fullmatch(cell):
        return "'" + cell
    return cell


class _Echo:
    def write(self, value):
        return value


def csv_rows(audience, variant=None):
    """Yield CSV lines; memory stays flat because members are read in chunks."""
    writer = csv.writer(_Echo())
    yield writer.writerow(HEADER)
    members = (
        (variants.members(variant) if variant else Membership.objects.filter(audience=audience))
        .select_related("profile")
        .prefetch_related(Prefetch("profile__identities", queryset=Identity.objects.order_by("type", "value")))
        .order_by("profile_id")
    )
    for member in members.iterator(chunk_size=2000):
        by_type = {}
        for identity in member.profile.identities.all():
            by_type.setdefault(identity.type, []).append(identity.value)
        cells = [member.profile.external_id] + [" | ".join(by_type.get(t, ())) for t in IdentityType.values]
        yield writer.writerow([defuse(cells[0]), member.since.isoformat(), *map(defuse, cells[1:])])


def audience_csv_response(audience, variant=None):
    response = StreamingHttpResponse(csv_rows(audience, variant), content_type="text/csv; charset=utf-8")
    name = slugify(audience.name) or "audience"
    if variant is not None:
        name += "-" + (slugify(variant.name) or f"variant-{variant.pk}")
    response["Content-Disposition"] = f'attachment; filename="{name}-members.csv"'
    return response
