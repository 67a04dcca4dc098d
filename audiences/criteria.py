"""The audience criteria language: JSON rules, validated and compiled to a `Q` over `Profile`.

    node := {"all": [node, ...]} | {"any": [node, ...]} | {"include": node, "exclude": node}
          | {"not": node} | event condition | {"user": ATTR, "op": OP, "value": V}
          | {"has_identity": IDENTITY_TYPE}

See docs/criteria.md for the full language. Public API: `validate`, `compile_criteria`,
`annotate_matches`, `referenced_events`, `describe` and `CriteriaError`.

Every compiled condition is two-valued (TRUE or FALSE, never SQL NULL), so `not`,
`exclude` and `ne` behave as plain negation even for profiles that lack an attribute.

One module past 400 lines on purpose: validation, compilation and description each walk the same node
shapes (SHAPES below), and a change to the grammar changes all three together.
"""

import json
import math
import operator
from datetime import timedelta
from functools import reduce

from django.conf import settings
from django.db import NotSupportedError
from django.db.models import (
    BooleanField,
    Case,
    CharField,
    Count,
    Exists,
    ExpressionWrapper,
    F,
    FilteredRelation,
    FloatField,
    Func,
    OuterRef,
    Q,
    When,
)
from django.db.models.functions import Cast, Lower
from django.db.models.lookups import (
    Contains,
    Exact,
    GreaterThan,
    GreaterThanOrEqual,
    In,
    LessThan,
    LessThanOrEqual,
)
from django.utils import timezone

from audiences.models import Event, Identity
from identities import IdentityType

MAX_CONDITIONS = 200
MAX_DAYS = 3650
DEFAULT_DAYS = 30
DEFAULT_COUNT = {"op": "gt", "value": 0}
MAX_IN_VALUES = 1000
MAX_NAME_LENGTH = 255
# Above this an event count cannot be reached, and SQLite cannot bind integers beyond 64 bits.
MAX_COUNT = 1_000_000_000

OPERATORS = ("eq", "ne", "contains", "gt", "gte", "lt", "lte", "in", "exists")
COUNT_OPERATORS = ("eq", "gt", "gte", "lt", "lte")
NUMERIC_OPERATORS = ("gt", "gte", "lt", "lte")

# The keys of each node shape; the first key names the shape.
SHAPES = {
    "all": ("all",),
    "any": ("any",),
    "include": ("include", "exclude"),
    "not": ("not",),
    "event": ("event", "where", "in_last_days", "count"),
    "user": ("user", "op", "value"),
    "has_identity": ("has_identity",),
}
REQUIRED_KEYS = {"include": ("include", "exclude"), "user": ("user", "op", "value")}
SHAPE_OF_KEY = {"exclude": "include", **{shape: shape for shape in SHAPES}}
NODE_KEYS = {key for keys in SHAPES.values() for key in keys}
ATTRIBUTE_KEYS = ("attribute", "op", "value")
COUNT_KEYS = ("op", "value")

COMPARE = {"eq": operator.eq, "gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}
NUMERIC_LOOKUPS = {"gt": GreaterThan, "gte": GreaterThanOrEqual, "lt": LessThan, "lte": LessThanOrEqual}


class CriteriaError(ValueError):
    """Criteria that are not valid; `path` says where (e.g. `all[1].op`) and `reason` what is wrong."""

    def __init__(self, path: str, reason: str):
        self.path = path or "criteria"
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


# --- Public API ---------------------------------------------------------------------------------


def validate(criteria) -> None:
    """Raise `CriteriaError` unless `criteria` is a valid criteria document."""
    _Validator().node(criteria, "", depth=1)


def compile_criteria(criteria, now=None) -> Q:
    """Validate `criteria` and return a `Q` selecting the matching `Profile` rows."""
    validate(criteria)
    return _compile(criteria, now or timezone.now())


def describe(criteria) -> str:
    """One line of English for `criteria`, for lists and summaries.

    It never raises, because it is used to display stored data: invalid criteria
    are described as such, with the error.
    """
    try:
        validate(criteria)
    except CriteriaError as exc:
        return f"invalid criteria ({exc})"
    return _describe(criteria)


def referenced_events(criteria) -> set[str]:
    """The event names valid `criteria` read: only events of these names can change whom they match."""
    validate(criteria)
    names = set()
    stack = [criteria]
    while stack:
        node = stack.pop()
        shape = _shape_of(node)
        if shape == "event":
            names.add(node["event"])
        elif shape in ("all", "any"):
            stack.extend(node[shape])
        elif shape == "include":
            stack.extend((node["include"], node["exclude"]))
        elif shape == "not":
            stack.append(node["not"])
    return names


def annotate_matches(profiles, criteria_list, now=None):
    """`profiles` (a `Profile` queryset) with a boolean column per criteria: whether `compile_criteria` selects
    the profile. Returns the queryset and the columns' names, in the order of `criteria_list`.

    Evaluated together in one pass over the profiles' events: each distinct event condition becomes one
    count over a single join to the events of the names they read, grouped by profile, and each criteria a
    condition on those counts and the profile's own columns. So many audiences cost about what one does.
    """
    now = now or timezone.now()
    counted = {}  # event condition, as canonical JSON -> (column, node)

    def event(node, now):
        column, _ = counted.setdefault(json.dumps(node, sort_keys=True), (f"event_count_{len(counted)}", node))
        count = node.get("count", DEFAULT_COUNT)
        return Q(**{f"{column}__{'exact' if count['op'] == 'eq' else count['op']}": count["value"]})

    conditions = []
    for criteria in criteria_list:
        validate(criteria)
        conditions.append(_compile(criteria, now, event))
    if counted:
        nodes = [node for _, node in counted.values()]
        read = Q(
            events__name__in=sorted({node["event"] for node in nodes}),
            events__occurred_at__gte=now
            - timedelta(days=max(node.get("in_last_days", DEFAULT_DAYS) for node in nodes)),
        )
        profiles = profiles.annotate(events_read=FilteredRelation("events", condition=read))
        profiles = profiles.annotate(**{column: _event_count(node, now) for column, node in counted.values()})
    names = [f"match_{i}" for i in range(len(conditions))]
    return profiles.annotate(
        **{name: ExpressionWrapper(q, output_field=BooleanField()) for name, q in zip(names, conditions, strict=True)}
    ), names


# --- Validation ---------------------------------------------------------------------------------


def _key(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _is_number(value) -> bool:
    # bool is an int in Python but not a number here; NaN and infinities compare with nothing, and
    # an integer too big for a float cannot be compared with the float the attribute is cast to.
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def text_problem(value: str) -> str | None:
    """Why the database cannot store or compare `value` (NUL, or half a UTF-16 pair from JSON), or None."""
    if "\x00" in value:
        return "must not contain the NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"must not contain an unpaired surrogate (U+{ord(value[exc.start]):04X})"
    return None


def _check_text(value: str, path: str) -> None:
    problem = text_problem(value)
    if problem:
        raise CriteriaError(path, problem)


def _is_whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _one_of(names) -> str:
    return ", ".join(names)


def _check_keys(node: dict, path: str, allowed, required) -> None:
    for key in node:
        if key not in allowed:
            raise CriteriaError(path, f"unknown key '{key}'; expected one of {_one_of(allowed)}")
    for key in required:
        if key not in node:
            raise CriteriaError(path, f"missing key '{key}'")


def _shape(node: dict, path: str) -> str:
    """The shape of `node` (all, any, include, not, event, user or has_identity), or an error."""
    found = {}  # shape -> the first key that names it
    for key in node:
        if key in SHAPE_OF_KEY:
            found.setdefault(SHAPE_OF_KEY[key], key)
    if len(found) > 1:
        first, second = list(found.values())[:2]
        raise CriteriaError(path, f"has both '{first}' and '{second}'; expected exactly one of {_one_of(SHAPES)}")
    if not found:
        unknown = [key for key in node if key not in NODE_KEYS]
        if unknown:
            raise CriteriaError(path, f"unknown key '{unknown[0]}'; expected one of {_one_of(SHAPES)}")
        raise CriteriaError(path, f"expected one of the keys {_one_of(SHAPES)}")
    return next(iter(found))


def _shape_of(node: dict) -> str:
    """The shape of a node already validated."""
    return next(SHAPE_OF_KEY[key] for key in node if key in SHAPE_OF_KEY)


class _Validator:
    """One walk over a criteria document; counts conditions as it goes."""

    def __init__(self):
        self.conditions = 0

    def node(self, node, path: str, depth: int) -> None:
        if depth > settings.CRITERIA_MAX_DEPTH:
            raise CriteriaError(path, f"nested too deep (at most {settings.CRITERIA_MAX_DEPTH} levels)")
        if not isinstance(node, dict):
            raise CriteriaError(path, "expected an object")
        shape = _shape(node, path)
        _check_keys(node, path, SHAPES[shape], REQUIRED_KEYS.get(shape, (shape,)))
        if shape in ("all", "any"):
            self.node_list(node[shape], _key(path, shape), depth)
        elif shape == "include":
            self.node(node["include"], _key(path, "include"), depth + 1)
            self.node(node["exclude"], _key(path, "exclude"), depth + 1)
        elif shape == "not":
            self.node(node["not"], _key(path, "not"), depth + 1)
        elif shape == "event":
            self.count_condition()
            self.event(node, path)
        elif shape == "user":
            self.count_condition()
            _check_attribute(node["user"], _key(path, "user"))
            _check_operator(node["op"], node["value"], path)
        else:
            self.count_condition()
            _check_identity_type(node["has_identity"], _key(path, "has_identity"))

    def node_list(self, nodes, path: str, depth: int) -> None:
        if not isinstance(nodes, list) or not nodes:
            raise CriteriaError(path, "expected a non-empty list")
        for index, child in enumerate(nodes):
            self.node(child, f"{path}[{index}]", depth + 1)

    def count_condition(self) -> None:
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            raise CriteriaError("", f"too many conditions (at most {MAX_CONDITIONS})")

    def event(self, node: dict, path: str) -> None:
        name = node["event"]
        if not isinstance(name, str) or not name:
            raise CriteriaError(_key(path, "event"), "must be a non-empty string")
        if len(name) > MAX_NAME_LENGTH:
            raise CriteriaError(_key(path, "event"), f"must be at most {MAX_NAME_LENGTH} characters")
        _check_text(name, _key(path, "event"))
        if "where" in node:
            self.where(node["where"], _key(path, "where"))
        if "in_last_days" in node:
            _check_days(node["in_last_days"], _key(path, "in_last_days"))
        if "count" in node:
            _check_count(node["count"], _key(path, "count"))

    def where(self, conditions, path: str) -> None:
        if not isinstance(conditions, list):
            raise CriteriaError(path, "expected a list")
        for index, condition in enumerate(conditions):
            item = f"{path}[{index}]"
            if not isinstance(condition, dict):
                raise CriteriaError(item, "expected an object")
            _check_keys(condition, item, ATTRIBUTE_KEYS, ATTRIBUTE_KEYS)
            self.count_condition()
            _check_attribute(condition["attribute"], _key(item, "attribute"))
            _check_operator(condition["op"], condition["value"], item)


def _check_attribute(name, path: str) -> None:
    if not isinstance(name, str) or not name:
        raise CriteriaError(path, "must be a non-empty string")
    if len(name) > MAX_NAME_LENGTH:
        raise CriteriaError(path, f"must be at most {MAX_NAME_LENGTH} characters")
    _check_text(name, path)
    # SQLite (before 3.45) cannot address a JSON key containing a double quote.
    if '"' in name:
        raise CriteriaError(path, 'must not contain a double quote (")')


def _check_operator(op, value, path: str) -> None:
    """Check `op` and its `value` (at `path`.op and `path`.value)."""
    if not isinstance(op, str) or op not in OPERATORS:
        shown = f"'{op}'" if isinstance(op, str) else json.dumps(op)
        raise CriteriaError(_key(path, "op"), f"unknown operator {shown}; expected one of {_one_of(OPERATORS)}")
    value_path = _key(path, "value")
    if op in NUMERIC_OPERATORS and not _is_number(value):
        raise CriteriaError(value_path, f"must be a number for '{op}'")
    if op == "contains" and not isinstance(value, str):
        raise CriteriaError(value_path, "must be a string for 'contains'")
    if op == "exists" and not isinstance(value, bool):
        raise CriteriaError(value_path, "must be true or false for 'exists'")
    if op in ("eq", "ne") and not (isinstance(value, str | bool) or _is_number(value)):
        raise CriteriaError(value_path, f"must be a string, number or boolean for '{op}'")
    if op == "in":
        _check_in_values(value, value_path)
    elif isinstance(value, str):
        _check_text(value, value_path)


def _check_in_values(values, path: str) -> None:
    if not isinstance(values, list) or not values:
        raise CriteriaError(path, "must be a non-empty list of strings or numbers for 'in'")
    if len(values) > MAX_IN_VALUES:
        raise CriteriaError(path, f"must have at most {MAX_IN_VALUES} values")
    for index, item in enumerate(values):
        if not (isinstance(item, str) or _is_number(item)):
            raise CriteriaError(f"{path}[{index}]", "must be a string or number")
        if isinstance(item, str):
            _check_text(item, f"{path}[{index}]")


def _check_identity_type(identity_type, path: str) -> None:
    if identity_type not in IdentityType.values:
        shown = f"'{identity_type}'" if isinstance(identity_type, str) else json.dumps(identity_type)
        raise CriteriaError(path, f"unknown identity type {shown}; expected one of {_one_of(IdentityType.values)}")


def _check_days(days, path: str) -> None:
    if not _is_whole(days) or days < 1:
        raise CriteriaError(path, "must be a positive whole number of days")
    if days > MAX_DAYS:
        raise CriteriaError(path, f"must be at most {MAX_DAYS} days")


def _check_count(count, path: str) -> None:
    if not isinstance(count, dict):
        raise CriteriaError(path, "expected an object")
    _check_keys(count, path, COUNT_KEYS, COUNT_KEYS)
    op = count["op"]
    if not isinstance(op, str) or op not in COUNT_OPERATORS:
        shown = f"'{op}'" if isinstance(op, str) else json.dumps(op)
        raise CriteriaError(
            _key(path, "op"), f"unknown count operator {shown}; expected one of {_one_of(COUNT_OPERATORS)}"
        )
    if not _is_whole(count["value"]) or count["value"] < 0:
        raise CriteriaError(_key(path, "value"), "must be a non-negative whole number")
    if count["value"] > MAX_COUNT:
        raise CriteriaError(_key(path, "value"), f"must be at most {MAX_COUNT}")


# --- JSON attribute access ----------------------------------------------------------------------
#
# Django's KeyTransform/KeyTextTransform would treat an attribute named "2024" as an array
# index, and their SQL differs per backend in what it returns for numbers and booleans. These
# two expressions read one top-level key the same way on SQLite and PostgreSQL, with the key
# always passed as a query parameter (so any name, including "a__b" or "a.b", is safe).


class _JSONKey(Func):
    def __init__(self, column: str, key: str):
        super().__init__(F(column))
        self.key = key

    def as_sql(self, compiler, connection, **extra_context):
        raise NotSupportedError(f"audience criteria are not supported on {connection.vendor}")

    def _column(self, compiler):
        return compiler.compile(self.source_expressions[0])

    @property
    def _sqlite_path(self) -> str:
        # The same escaping as Django's JSONField, so the path matches the stored text.
        return "$." + json.dumps(self.key)


class JSONKeyType(_JSONKey):
    """The JSON type of the key: string, number, true, false, null, object, array or missing.

    Never NULL, so conditions built on it are never unknown.
    """

    output_field = CharField()

    def as_postgresql(self, compiler, connection, **extra_context):
        column, params = self._column(compiler)
        sql = (
            f"COALESCE(CASE jsonb_typeof({column} -> %s) WHEN 'boolean' THEN {column} ->> %s "
            f"ELSE jsonb_typeof({column} -> %s) END, 'missing')"
        )
        return sql, (*params, self.key, *params, self.key, *params, self.key)

    def as_sqlite(self, compiler, connection, **extra_context):
        column, params = self._column(compiler)
        sql = (
            f"CASE json_type({column}, %s) WHEN 'text' THEN 'string' WHEN 'integer' THEN 'number' "
            "WHEN 'real' THEN 'number' WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' "
            "WHEN 'null' THEN 'null' WHEN 'array' THEN 'array' WHEN 'object' THEN 'object' "
            "ELSE 'missing' END"
        )
        return sql, (*params, self._sqlite_path)


class JSONKeyText(_JSONKey):
    """The key's value as SQL text (strings unquoted); only meaningful with a type check."""

    output_field = CharField()

    def as_postgresql(self, compiler, connection, **extra_context):
        column, params = self._column(compiler)
        return f"({column} ->> %s)", (*params, self.key)

    def as_sqlite(self, compiler, connection, **extra_context):
        column, params = self._column(compiler)
        return f"json_extract({column}, %s)", (*params, self._sqlite_path)


def _type_is(column: str, key: str, json_type: str) -> Q:
    return Q(Exact(JSONKeyType(column, key), json_type))


def _lower_text(column: str, key: str):
    return Lower(JSONKeyText(column, key))


def _number(column: str, key: str):
    # PostgreSQL raises on a cast of non-numeric text, and AND does not fix the order in which
    # it evaluates its operands: only CASE guarantees the type check runs before the cast.
    return Case(
        When(_type_is(column, key, "number"), then=Cast(JSONKeyText(column, key), FloatField())),
        output_field=FloatField(),
    )


# --- Compilation --------------------------------------------------------------------------------


def _compile(node: dict, now, event=None) -> Q:
    """`node` as a `Q` over `Profile`; `event(node, now)` compiles its event conditions (by default `_event`)."""
    event = event or _event
    shape = _shape_of(node)
    if shape == "all":
        return reduce(operator.and_, (_compile(child, now, event) for child in node["all"]))
    if shape == "any":
        return reduce(operator.or_, (_compile(child, now, event) for child in node["any"]))
    if shape == "include":
        return _compile(node["include"], now, event) & ~_compile(node["exclude"], now, event)
    if shape == "not":
        return ~_compile(node["not"], now, event)
    if shape == "event":
        return event(node, now)
    if shape == "user":
        return _attribute("attributes", node["user"], node["op"], node["value"])
    return Q(Exists(Identity.objects.filter(profile=OuterRef("pk"), type=node["has_identity"])))


def _attribute(column: str, key: str, op: str, value) -> Q:
    """A condition on one key of the JSON `column` (of Profile or of Event)."""
    if op == "exists":
        missing = _type_is(column, key, "missing")
        return ~missing if value else missing
    if op == "eq":
        return _equals(column, key, value)
    if op == "ne":
        # The negation of eq, so a missing attribute (or one of another type) matches.
        return ~_equals(column, key, value)
    if op == "contains":
        return _type_is(column, key, "string") & Q(Contains(_lower_text(column, key), value.lower()))
    if op == "in":
        return _in(column, key, value)
    lookup = NUMERIC_LOOKUPS[op]
    return _type_is(column, key, "number") & Q(lookup(_number(column, key), float(value)))


def _equals(column: str, key: str, value) -> Q:
    if isinstance(value, bool):
        return _type_is(column, key, "true" if value else "false")
    if isinstance(value, str):
        return _type_is(column, key, "string") & Q(Exact(_lower_text(column, key), value.lower()))
    return _type_is(column, key, "number") & Q(Exact(_number(column, key), float(value)))


def _in(column: str, key: str, values: list) -> Q:
    strings = [value.lower() for value in values if isinstance(value, str)]
    # Compared as floats, like the attribute: SQLite cannot bind an integer beyond 64 bits.
    numbers = [float(value) for value in values if not isinstance(value, str)]
    parts = []
    if strings:
        parts.append(_type_is(column, key, "string") & Q(In(_lower_text(column, key), strings)))
    if numbers:
        parts.append(_type_is(column, key, "number") & Q(In(_number(column, key), numbers)))
    return reduce(operator.or_, parts)


def _event_count(node: dict, now) -> Count:
    """How many of a profile's `events_read` (see `annotate_matches`) the event condition `node` counts."""
    matching = Q(
        events_read__name=node["event"],
        events_read__occurred_at__gte=now - timedelta(days=node.get("in_last_days", DEFAULT_DAYS)),
    )
    for condition in node.get("where", []):
        matching &= _attribute("events_read__attributes", condition["attribute"], condition["op"], condition["value"])
    return Count("events_read", filter=matching)


def _event(node: dict, now) -> Q:
    """Profiles whose number of matching events satisfies the count predicate."""
    days = node.get("in_last_days", DEFAULT_DAYS)
    events = Event.objects.filter(name=node["event"], occurred_at__gte=now - timedelta(days=days))
    for condition in node.get("where", []):
        events = events.filter(_attribute("attributes", condition["attribute"], condition["op"], condition["value"]))

    count = node.get("count", DEFAULT_COUNT)
    op, n = count["op"], count["value"]
    if (op, n) in (("gt", 0), ("gte", 1)):
        return Q(Exists(events.filter(profile=OuterRef("pk"))))

    per_profile = events.values("profile").annotate(matches=Count("pk"))
    holds = Q(**{f"matches__{'exact' if op == 'eq' else op}": n})
    if COMPARE[op](0, n):
        # Profiles without any matching event satisfy the predicate too, and the GROUP BY
        # cannot see them: select everyone except those whose (non-zero) count fails it.
        return ~Q(pk__in=per_profile.exclude(holds).values("profile"))
    return Q(pk__in=per_profile.filter(holds).values("profile"))


# --- Description --------------------------------------------------------------------------------

SYMBOLS = {
    "eq": "=",
    "ne": "!=",
    "contains": "contains",
    "gt": ">",
    "gte": ">=",
    "lt": "<",
    "lte": "<=",
    "in": "in",
}


def _describe(node: dict) -> str:
    shape = _shape_of(node)
    if shape in ("all", "any"):
        joiner = " AND " if shape == "all" else " OR "
        return joiner.join(_describe_part(child) for child in node[shape])
    if shape == "include":
        return f"{_describe_part(node['include'])} AND NOT {_describe_part(node['exclude'])}"
    if shape == "not":
        return f"NOT {_describe_part(node['not'])}"
    if shape == "event":
        return _describe_event(node)
    if shape == "user":
        return f"user {_describe_attribute(node['user'], node['op'], node['value'])}"
    return f"has identity {node['has_identity']}"


def _describe_part(node: dict) -> str:
    """A child node, in parentheses when it combines several conditions."""
    text = _describe(node)
    compound = any(key in node for key in ("all", "any", "include")) and (
        "include" in node or len(node.get("all") or node.get("any")) > 1
    )
    return f"({text})" if compound else text


def _describe_attribute(key: str, op: str, value) -> str:
    if op == "exists":
        return f"has {key}" if value else f"has no {key}"
    return f"{key} {SYMBOLS[op]} {json.dumps(value, ensure_ascii=False)}"


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


def _describe_count(op: str, n: int) -> str:
    if op == "eq":
        return "0 times" if n == 0 else f"exactly {_times(n)}"
    return {"gt": "more than", "gte": "at least", "lt": "fewer than", "lte": "at most"}[op] + f" {_times(n)}"


def _describe_event(node: dict) -> str:
    parts = [node["event"]]
    if node.get("where"):
        conditions = ", ".join(_describe_attribute(c["attribute"], c["op"], c["value"]) for c in node["where"])
        parts.append(f"({conditions})")
    count = node.get("count", DEFAULT_COUNT)
    if count != DEFAULT_COUNT:
        parts.append(_describe_count(count["op"], count["value"]))
    days = node.get("in_last_days", DEFAULT_DAYS)
    parts.append("in the last day" if days == 1 else f"in the last {days} days")
    return " ".join(parts)
