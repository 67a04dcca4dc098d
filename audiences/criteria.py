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
from django.db import NotSupportedError, connection
from django.db.models import (
    BooleanField,
    Case,
    CharField,
    Count,
    DateTimeField,
    Exists,
    Expression,
    ExpressionWrapper,
    F,
    FloatField,
    Func,
    IntegerField,
    OuterRef,
    Q,
    When,
)
from django.db.models.expressions import RawSQL
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
from django.db.models.sql import Query
from django.db.models.sql.constants import LOUTER
from django.utils import timezone

from audiences.models import Event, Identity, Profile
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


def annotate_matches(profiles, criteria_list, now=None, *, profile_ids=None):
    """`profiles` (a `Profile` queryset) with a boolean column per criteria: whether `compile_criteria` selects
    the profile. Returns the queryset and the columns' names, in the order of `criteria_list`.

    `profile_ids`, when given, is SQL and its parameters selecting the IDs of `profiles` (or more): the events
    read are those of these IDs, instead of those of `profiles.values("pk")`.

    Evaluated together in one pass over the profiles' events: each distinct event condition becomes one
    count in a single grouped read of the profiles' events of the names read (`_event_counts`), and each
    criteria a condition on those counts and the profile's own columns. So many audiences cost about what
    one does.
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
        ids = profile_ids or profiles.order_by().values("pk").query.sql_with_params()
        profiles = _join_event_counts(profiles, _event_counts(ids, [node for _, node in counted.values()], now))
        profiles = profiles.annotate(
            **{
                column: RawSQL(f"COALESCE({COUNTS}.c{i}, 0)", [], output_field=IntegerField())
                for i, (column, _) in enumerate(counted.values())
            }
        )
    names = [f"match_{i}" for i in range(len(conditions))]
    return profiles.annotate(
        **{name: ExpressionWrapper(q, output_field=BooleanField()) for name, q in zip(names, conditions, strict=True)}
    ), names


# --- Event counts, for many conditions at once ----------------------------------------------------
#
# `annotate_matches` joins the profiles to one derived table: per profile, how many of its events each
# event condition counts. Its rows come from a subquery that reads each attribute key the conditions name
# once per event row (its JSON type, and its lower-cased text or its number when a condition compares
# them), so ten conditions on one key cost one read of the key, not thirty. The conditions are the same
# `_attribute` conditions `compile_criteria` uses, over those columns instead of over the JSON.

COUNTS = "relay_event_counts"  # the derived table's alias
READ = "relay_events_read"  # the alias of the events subquery inside it


class _KeyRead:
    """One key of the JSON `column` read where it is compared (`compile_criteria`)."""

    def __init__(self, column: str, key: str):
        self.column, self.key = column, key

    def type_is(self, json_type: str) -> Q:
        return Q(Exact(JSONKeyType(self.column, self.key), json_type))

    def lower_text(self):
        return Lower(JSONKeyText(self.column, self.key))

    def number(self):
        # PostgreSQL raises on a cast of non-numeric text, and AND does not fix the order in which
        # it evaluates its operands: only CASE guarantees the type check runs before the cast.
        return Case(
            When(self.type_is("number"), then=Cast(JSONKeyText(self.column, self.key), FloatField())),
            output_field=FloatField(),
        )


class _ReadColumn(Expression):
    """A column of the events subquery of `_event_counts`."""

    def __init__(self, name: str, output_field):
        super().__init__(output_field=output_field)
        self.name = name

    def as_sql(self, compiler, connection):
        return f"{READ}.{self.name}", []


class _ColumnsRead:
    """One key already read by the events subquery: the columns holding its type, lower-cased text and number,
    each the very expression `_KeyRead` compares."""

    def __init__(self, index: int):
        self.index = index

    def type_is(self, json_type: str) -> Q:
        return Q(Exact(_ReadColumn(f"t{self.index}", CharField()), json_type))

    def lower_text(self):
        return _ReadColumn(f"s{self.index}", CharField())

    def number(self):
        return _ReadColumn(f"n{self.index}", FloatField())

    @staticmethod
    def columns(index: int, key: str, uses: set[str]) -> dict:
        """The events subquery's columns for `key`: its type always, its text and number when `uses` them."""
        read = _KeyRead("attributes", key)
        columns = {f"t{index}": JSONKeyType("attributes", key)}
        if "text" in uses:
            columns[f"s{index}"] = read.lower_text()
        if "number" in uses:
            columns[f"n{index}"] = read.number()
        return columns


def _uses(op: str, value) -> set[str]:
    """What of an attribute `_attribute` compares beside its type, for `op` and `value`."""
    if op in ("eq", "ne"):
        return set() if isinstance(value, bool) else {"text" if isinstance(value, str) else "number"}
    if op == "contains":
        return {"text"}
    if op == "in":
        return {"text" if isinstance(v, str) else "number" for v in value}
    return set() if op == "exists" else {"number"}


def _event_counts(profile_ids: tuple[str, list], nodes: list[dict], now) -> tuple[str, list]:
    """SQL of the derived table: `profile_id` and `c0`, `c1`, … (how many events each of `nodes` counts), for
    the profiles of `profile_ids` (SQL and parameters) that have events of the names read."""
    keys = {}  # attribute key -> (index, what is compared)
    for node in nodes:
        for condition in node.get("where", []):
            index, uses = keys.setdefault(condition["attribute"], (len(keys), set()))
            uses |= _uses(condition["op"], condition["value"])
    since = now - timedelta(days=max(node.get("in_last_days", DEFAULT_DAYS) for node in nodes))
    events = Event.objects.filter(
        _among(*profile_ids), name__in=sorted({node["event"] for node in nodes}), occurred_at__gte=since
    ).order_by()
    extracted = {}
    for key, (index, uses) in keys.items():
        extracted.update(_ColumnsRead.columns(index, key, uses))
    read_sql, read_params = (
        events.values("profile_id", "name", "occurred_at").annotate(**extracted).query.sql_with_params()
    )
    if connection.vendor == "postgresql":
        # A fence: without it the planner folds the subquery into the grouping and reads the keys again in
        # every condition.
        read_sql += " OFFSET 0"

    query = Query(Event)
    compiler = query.get_compiler(connection=connection)
    counts, params = [], []
    for i, node in enumerate(nodes):
        matching = Q(Exact(_ReadColumn("name", CharField()), node["event"])) & Q(
            GreaterThanOrEqual(
                _ReadColumn("occurred_at", DateTimeField()),
                now - timedelta(days=node.get("in_last_days", DEFAULT_DAYS)),
            )
        )
        for condition in node.get("where", []):
            read = _ColumnsRead(keys[condition["attribute"]][0])
            matching &= _attribute(read, condition["op"], condition["value"])
        sql, cond_params = compiler.compile(query.build_where(matching))
        if connection.features.supports_aggregate_filter_clause:
            counts.append(f"COUNT(*) FILTER (WHERE {sql}) AS c{i}")
        else:
            counts.append(f"COUNT(CASE WHEN {sql} THEN 1 END) AS c{i}")
        params += cond_params
    return (
        f"SELECT {READ}.profile_id, {', '.join(counts)} FROM ({read_sql}) {READ} GROUP BY {READ}.profile_id",
        [*params, *read_params],
    )


def _among(ids_sql: str, ids_params) -> Q:
    """Events of the profiles `ids_sql` selects; on PostgreSQL as `= ANY(ARRAY(…))`, so the events are found
    through their profile index instead of by hashing a join."""
    if connection.vendor == "postgresql":
        sql = f'{Event._meta.db_table}."profile_id" = ANY(ARRAY({ids_sql}))'
    else:
        sql = f'{Event._meta.db_table}."profile_id" IN ({ids_sql})'
    return Q(RawSQL(sql, ids_params, output_field=BooleanField()))


class _CountsJoin:
    """`LEFT OUTER JOIN (counts) relay_event_counts ON relay_event_counts.profile_id = <profile>.id`.

    Django's `Join` joins only tables and relations; this duck-types it (the attributes `Query.alias_map`
    entries must have) to join the derived table of `_event_counts`. Its alias never changes, so the
    `RawSQL` reading its columns stays right even in a relabelled query.
    """

    join_type = LOUTER
    nullable = True
    filtered_relation = None

    def __init__(self, sql: str, params: list, parent_alias: str):
        self.sql, self.params, self.parent_alias = sql, params, parent_alias
        self.table_name = self.table_alias = COUNTS

    def as_sql(self, compiler, connection):
        parent = compiler.quote_name_unless_alias(self.parent_alias)
        on = f"{COUNTS}.profile_id = {parent}.{connection.ops.quote_name(Profile._meta.pk.column)}"
        return f"LEFT OUTER JOIN ({self.sql}) {COUNTS} ON {on}", list(self.params)

    def relabeled_clone(self, change_map):
        return _CountsJoin(self.sql, self.params, change_map.get(self.parent_alias, self.parent_alias))

    def demote(self):
        return self

    def promote(self):
        return self


def _join_event_counts(profiles, counts: tuple[str, list]):
    sql, params = counts
    profiles = profiles.all()
    parent = profiles.query.get_initial_alias()
    profiles.query.alias_map[COUNTS] = _CountsJoin(sql, params, parent)
    profiles.query.alias_refcount[COUNTS] = 1
    return profiles


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
        return _attribute(_KeyRead("attributes", node["user"]), node["op"], node["value"])
    return Q(Exists(Identity.objects.filter(profile=OuterRef("pk"), type=node["has_identity"])))


def _attribute(read, op: str, value) -> Q:
    """A condition on one attribute of Profile or of Event, read with `read` (a `_KeyRead` or `_ColumnsRead`)."""
    if op == "exists":
        missing = read.type_is("missing")
        return ~missing if value else missing
    if op == "eq":
        return _equals(read, value)
    if op == "ne":
        # The negation of eq, so a missing attribute (or one of another type) matches.
        return ~_equals(read, value)
    if op == "contains":
        return read.type_is("string") & Q(Contains(read.lower_text(), value.lower()))
    if op == "in":
        return _in(read, value)
    lookup = NUMERIC_LOOKUPS[op]
    return read.type_is("number") & Q(lookup(read.number(), float(value)))


def _equals(read, value) -> Q:
    if isinstance(value, bool):
        return read.type_is("true" if value else "false")
    if isinstance(value, str):
        return read.type_is("string") & Q(Exact(read.lower_text(), value.lower()))
    return read.type_is("number") & Q(Exact(read.number(), float(value)))


def _in(read, values: list) -> Q:
    strings = [value.lower() for value in values if isinstance(value, str)]
    # Compared as floats, like the attribute: SQLite cannot bind an integer beyond 64 bits.
    numbers = [float(value) for value in values if not isinstance(value, str)]
    parts = []
    if strings:
        parts.append(read.type_is("string") & Q(In(read.lower_text(), strings)))
    if numbers:
        parts.append(read.type_is("number") & Q(In(read.number(), numbers)))
    return reduce(operator.or_, parts)


def _event(node: dict, now) -> Q:
    """Profiles whose number of matching events satisfies the count predicate."""
    days = node.get("in_last_days", DEFAULT_DAYS)
    events = Event.objects.filter(name=node["event"], occurred_at__gte=now - timedelta(days=days))
    for condition in node.get("where", []):
        events = events.filter(
            _attribute(_KeyRead("attributes", condition["attribute"]), condition["op"], condition["value"])
        )

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
