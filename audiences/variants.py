"""A/B variants of an audience: which member is in which variant, read back in SQL.

Each member falls in one of 10,000 buckets by a hash of (audience, split version, profile); a variant holds a
range of buckets as wide as its percentage (45% → 4,500 buckets). The hash is integer arithmetic that
PostgreSQL and SQLite compute alike (and `bucket` below in Python), so a member stays in its variant across
refreshes, processes and databases, and nothing is stored per member: a variant's members are the audience's
members whose bucket is in its range, one expression in the query that reads them.

Changing the percentages keeps the hash, so only the members at the shifted boundaries move; a new set of
variants (one added, removed or renamed) is a new test and shuffles the members afresh (the split version is
part of the hash).
"""

import hashlib
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import F, Func, IntegerField

from audiences import hooks
from audiences.models import Audience, Membership, Variant

BUCKETS = 10_000
MIN_VARIANTS, MAX_VARIANTS = 2, 5
# A prime under 2³¹ and two multipliers under it: every product below stays under 2⁶² (no 64-bit overflow on
# PostgreSQL, no switch to floating point on SQLite).
P = 2_147_483_647
M1 = 1_103_515_245
M2 = 1_597_334_677
T_MEMBER = Membership._meta.db_table


def seed(audience_id: int, version: int) -> tuple[int, int]:
    digest = hashlib.sha256(f"audience {audience_id} split {version}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % P, int.from_bytes(digest[8:16], "big") % P


def bucket(profile_id: int, seeds: tuple[int, int]) -> int:
    """The member's bucket, 0–9,999: the same arithmetic as `bucket_sql`."""
    s1, s2 = seeds
    a = ((profile_id % P) * M1 + s1) % P
    b = (((a * a) % P) * M2 + a + s2) % P
    return b % BUCKETS


def bucket_sql(column: str, seeds: tuple[int, int]) -> str:
    """SQL computing the bucket of the profile ID in `column` (integers only, so nothing to bind).

    The modulo is written %% because the SQL always runs with parameters (pass [] when there are none), which
    turns %% into % on both databases.
    """
    s1, s2 = (int(s) for s in seeds)
    a = f"(((CAST({column} AS BIGINT) %% {P}) * {M1} + {s1}) %% {P})"
    return f"((((({a} * {a}) %% {P}) * {M2} + {a} + {s2}) %% {P}) %% {BUCKETS})"


@dataclass(frozen=True)
class Scope:
    """Where one variant's members are: the buckets [first, last] under the audience's current hash."""

    seeds: tuple[int, int]
    first: int
    last: int

    def sql(self, column: str) -> str:
        """A condition on the profile ID in `column`: true for the members of this variant."""
        return f"{bucket_sql(column, self.seeds)} BETWEEN {int(self.first)} AND {int(self.last)}"

    def holds(self, profile_id: int) -> bool:
        return self.first <= bucket(profile_id, self.seeds) <= self.last


def scope_of(variant: Variant, audience: Audience | None = None) -> Scope:
    audience = audience or variant.audience
    return Scope(seed(audience.pk, audience.split_version), variant.first_bucket, variant.last_bucket)


class Bucket(Func):
    """The bucket of a profile ID expression, for querysets (the ORM names the column, also in subqueries)."""

    output_field = IntegerField()

    def __init__(self, expression, seeds):
        super().__init__(expression)
        self.seeds = seeds

    def as_sql(self, compiler, connection, **extra):
        sql, params = compiler.compile(self.source_expressions[0])
        if params:
            raise ValueError("A bucket is computed from a column, not from a value.")
        return bucket_sql(sql, self.seeds), []


def members(variant: Variant):
    """The variant's memberships, as a queryset of Membership (one query, like an audience's)."""
    s = scope_of(variant)
    return (
        Membership.objects.filter(audience_id=variant.audience_id)
        .alias(bucket=Bucket(F("profile_id"), s.seeds))
        .filter(bucket__gte=s.first, bucket__lte=s.last)
    )


def sizes(audience: Audience) -> dict[int, int]:
    """Members per variant ID, from one pass over the audience's members."""
    variants = list(audience.variants.all())
    if not variants:
        return {}
    b = bucket_sql("profile_id", seed(audience.pk, audience.split_version))
    counts = ", ".join(
        f"SUM(CASE WHEN b BETWEEN {int(v.first_bucket)} AND {int(v.last_bucket)} THEN 1 ELSE 0 END)" for v in variants
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {counts} FROM (SELECT {b} AS b FROM {T_MEMBER} WHERE audience_id = %s) s", [audience.pk]
        )
        row = cursor.fetchone()
    return {v.pk: int(n or 0) for v, n in zip(variants, row, strict=True)}


def variant_of(audience: Audience, variants, profile_id: int) -> Variant | None:
    """The variant (of `variants`, the audience's) a member is in; None when the audience is not split."""
    b = bucket(profile_id, seed(audience.pk, audience.split_version))
    return next((v for v in variants if v.first_bucket <= b <= v.last_bucket), None)


# --- changing the split ------------------------------------------------------------------------------------


def clean_split(spec) -> list[tuple[str, int]]:
    """[(name, percent)] from [{"name", "percent"}]; ValidationError keyed "variants" saying what is wrong.

    An empty list removes the split. Otherwise 2–5 variants, distinct names, whole-number percentages from 1
    to 99 that add up to 100.
    """
    if not isinstance(spec, list | tuple):
        raise ValidationError({"variants": ["Must be a list of variants, each with a name and a percent."]})
    if spec and not MIN_VARIANTS <= len(spec) <= MAX_VARIANTS:
        raise ValidationError(
            {"variants": [f"An audience has {MIN_VARIANTS} to {MAX_VARIANTS} variants (or none); got {len(spec)}."]}
        )
    cleaned, problems = [], []
    for i, item in enumerate(spec, start=1):
        name = item.get("name") if isinstance(item, dict) else None
        percent = item.get("percent") if isinstance(item, dict) else None
        name = name.strip() if isinstance(name, str) else ""
        if not name or len(name) > 100 or any(ord(ch) < 32 for ch in name):
            problems.append(f"Variant {i} needs a name of 1 to 100 printable characters.")
        if isinstance(percent, bool) or not isinstance(percent, int) or not 1 <= percent <= 99:
            problems.append(f"Variant {i}'s percent must be a whole number from 1 to 99.")
        cleaned.append((name, percent))
    if problems:
        raise ValidationError({"variants": problems})
    seen = set()
    for name, _ in cleaned:
        if name.casefold() in seen:
            raise ValidationError({"variants": [f"Each variant needs its own name: '{name}' is given twice."]})
        seen.add(name.casefold())
    total = sum(p for _, p in cleaned)
    if cleaned and total != 100:
        raise ValidationError({"variants": [f"The percentages must add up to 100; they add up to {total}."]})
    return cleaned


def parse_split(text: str) -> list[dict]:
    """ "A=45 B=45 control=10" (the command's form) as [{"name", "percent"}]; ValidationError when malformed."""
    spec = []
    for part in text.replace(",", " ").split():
        name, eq, percent = part.rpartition("=")
        if not eq or not percent.isdigit():
            raise ValidationError({"variants": [f"Write each variant as NAME=PERCENT, such as A=45; got '{part}'."]})
        spec.append({"name": name, "percent": int(percent)})
    return spec


@dataclass
class SplitResult:
    status: str  # "changed", "unchanged" or "disconnecting" (nothing changed yet: connections are going first)
    detail: str
    members: int = 0
    moved: int = 0
    queued: int = 0
    variants: list = field(default_factory=list)


def _ranges(cleaned) -> list[tuple[str, int, int, int]]:
    """[(name, percent, first, last)]: consecutive bucket ranges in the order given."""
    out, start = [], 0
    for name, percent in cleaned:
        out.append((name, percent, start, start + percent * BUCKETS // 100 - 1))
        start += percent * BUCKETS // 100
    return out


def _variant_case(column: str, seeds, ranges) -> str:
    """SQL naming the position (1-based) of the variant the member is in, by bucket."""
    if not ranges:
        return "0"
    b = bucket_sql(column, seeds)
    whens = " ".join(f"WHEN {b} BETWEEN {int(first)} AND {int(last)} THEN {i}" for i, (first, last) in ranges)
    return f"CASE {whens} ELSE 0 END"


def _moved(audience, before, after, old_seeds, new_seeds) -> int:
    """How many members are in another variant (by name) after the change than before: one counting query."""
    if not before or not after:
        return 0  # a first split assigns the members, and removing it unsplits them: nobody moves between variants
    names = sorted({n for n, *_ in before} | {n for n, *_ in after})
    index = {n: i for i, n in enumerate(names, start=1)}
    old = _variant_case("profile_id", old_seeds, [(index[n], (f, last)) for n, f, last in before])
    new = _variant_case("profile_id", new_seeds, [(index[n], (f, last)) for n, f, last in after])
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {T_MEMBER} WHERE audience_id = %s AND ({old}) <> ({new})", [audience.pk])
        return cursor.fetchone()[0]


def describe(variants) -> str:
    return "/".join(str(v.percent) for v in variants) + " (" + ", ".join(v.name for v in variants) + ")"


def change_split(audience: Audience, spec, disconnect: str | None = None) -> SplitResult:
    """Set the audience's variants to `spec` ([{"name", "percent"}], in order; [] removes them).

    Variants keep their connections by name. Members who end in another variant than before are counted, and
    the listeners (connections) queue their removes and adds in this transaction. Variants that go away and
    still have connections are refused unless `disconnect` says what to do with them ("keep": disconnect
    leaving the members at the partner; "remove": remove them from the partner first, and change the split
    once those connections are gone).
    """
    cleaned = clean_split(spec)
    callers = audience
    with transaction.atomic():
        audience = Audience.objects.select_for_update().get(pk=audience.pk)
        old = list(audience.variants.all())
        wanted = {n for n, _ in cleaned}
        gone = [v for v in old if v.name not in wanted]
        if gone:
            waiting = hooks.variants_removed(audience, gone, disconnect)
            if waiting:
                return SplitResult("disconnecting", waiting, audience.size, variants=old)
        before = [(v.name, v.first_bucket, v.last_bucket) for v in old]
        ranges = _ranges(cleaned)
        if before == [(n, f, last) for n, _, f, last in ranges]:
            said = f"is already split {describe(old)}" if old else "has no variants"
            return SplitResult("unchanged", f"'{audience.name}' {said}.", audience.size, variants=old)
        old_seeds = seed(audience.pk, audience.split_version)
        old_scopes = {v.pk: Scope(old_seeds, v.first_bucket, v.last_bucket) for v in old if v.name in wanted}
        if {v.name for v in old} != wanted:
            audience.split_version += 1
            Audience.objects.filter(pk=audience.pk).update(split_version=audience.split_version)
        new_seeds = seed(audience.pk, audience.split_version)
        moved = _moved(audience, before, [(n, f, last) for n, _, f, last in ranges], old_seeds, new_seeds)
        by_name = {v.name: v for v in old}
        Variant.objects.filter(pk__in=[v.pk for v in gone]).delete()
        variants = []
        for position, (name, percent, first, last) in enumerate(ranges):
            v = by_name.get(name) or Variant(audience=audience, name=name)
            v.percent, v.position, v.first_bucket, v.last_bucket = percent, position, first, last
            v.save()
            variants.append(v)
        new_scopes = {v.pk: Scope(new_seeds, v.first_bucket, v.last_bucket) for v in variants}
        queued = hooks.split_changed(audience, old_scopes, new_scopes)
    # The caller's object reads its variants' members next (variants fetched through it point back to it).
    callers.split_version = audience.split_version
    return SplitResult("changed", _changed_sentence(audience, variants, old, moved, queued), audience.size, moved,
                       queued, variants)  # fmt: skip


def _changed_sentence(audience, variants, old, moved, queued) -> str:
    members = f"{audience.size:,} member{'' if audience.size == 1 else 's'}"
    if not variants:
        said = f"'{audience.name}' is no longer split; its {members} are one audience again."
    elif not old:
        said = f"Split '{audience.name}' {describe(variants)}: its {members} are assigned by a stable hash."
    else:
        said = (
            f"Split '{audience.name}' {describe(variants)}: {moved:,} of its {members} "
            f"{'moves' if moved == 1 else 'move'} to another variant."
        )
    if queued:
        said += f" Queued {queued:,} message{'' if queued == 1 else 's'} to move them at the connected partners."
    return said
