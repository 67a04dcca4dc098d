"""The operator's dashboard on the admin index: does anything need me, and where?

A fixed number of queries whatever the number of connections: the connections with their waiting counts
(one correlated subquery), the last 24 hours of delivery records grouped by connection and hour, and the
audiences with their connection counts.
"""

import datetime as dt
from dataclasses import dataclass, field

from django.db.models import Count, Sum
from django.db.models.functions import TruncHour
from django.urls import reverse
from django.utils import timezone

from audiences.models import Audience
from connections import reverify
from connections.charts import Bucket, hourly_bars
from connections.models import Connection, Delivery
from connections.queries import with_pending
from staff import dates

Status = Connection.Status
HOURS = 24
AUDIENCES_SHOWN = 25


@dataclass(frozen=True)
class State:
    key: str
    label: str
    tone: str  # bad, warn, quiet, good: the badge colour


# Worst first: the order of the list on the dashboard.
STATES = [
    State("faulted", "Faulted", "bad"),
    State("failing", "Failing", "bad"),
    State("warning", "Warning", "warn"),
    State("paused", "Paused", "quiet"),
    State("checking", "Re-checking", "quiet"),
    State("unverified", "Not verified", "quiet"),
    State("disconnecting", "Disconnecting", "quiet"),
    State("ok", "OK", "good"),
]
BY_KEY = {s.key: s for s in STATES}
FIXED = "The checks pass now: resume the connection to send what is waiting."
RANK = {s.key: i for i, s in enumerate(STATES)}


def state_of(conn: Connection) -> str:
    """Faulted and paused are what the connection does; otherwise its last verification says how it is."""
    if conn.status == Status.FAULTED:
        return "faulted"
    if conn.status == Status.DISCONNECTING:
        return "disconnecting"
    if conn.status == Status.PAUSED:
        # Paused on purpose, unless it could not work anyway: then fixing it comes before resuming.
        return "failing" if conn.verification_status == Connection.Verification.FAILING else "paused"
    return conn.verification_status


def reason_of(conn: Connection, state: str) -> tuple[str, str]:
    """(what is wrong, what to do) in the words of the status or of the first check that did not pass."""
    if state == "faulted" and conn.status_reason:
        # The reason is the fault's, from when it happened: say when the checks say it has been put right since.
        if reverify.is_stale(conn):
            return conn.status_reason, reverify.waiting_sentence(conn)
        if [c.get("name") for c in conn.verification_checks or [] if c.get("status") != "ok"] == ["status"]:
            return conn.status_reason, FIXED
    if state in ("faulted", "paused", "disconnecting") and conn.status_reason:
        return conn.status_reason, ""
    if state in ("failing", "warning"):
        for status in ("failing", "warning"):
            for check in conn.verification_checks or []:
                if check.get("status") == status:
                    return check.get("detail", ""), check.get("hint", "")
    if state == "unverified":
        return "Not verified yet.", ""
    if state == "checking":
        return reverify.waiting_sentence(conn), ""
    return "", ""


def verified_ago(conn: Connection) -> str:
    return f"Verified {dates.ago(conn.verified_at)}." if conn.verified_at else ""


@dataclass
class Row:
    conn: Connection
    state: State
    reason: str
    hint: str
    quiet: str  # when nothing needs doing: when it was last verified
    waiting: int
    delivered: int
    rejected: int
    chart: str
    url: str


@dataclass
class AudienceRow:
    audience: Audience
    connections: int
    url: str
    refreshed: str


@dataclass
class Dashboard:
    rows: list[Row]
    counts: list[tuple[State, int]]  # every state that has connections, worst first
    headline: str
    tone: str
    delivered: int
    rejected: int
    chart: str
    audiences: list[AudienceRow] = field(default_factory=list)
    more_audiences: bool = False


def hour_slots(now) -> list[dt.datetime]:
    """The start of each of the last 24 hours, the current one last, in the current time zone."""
    current = timezone.localtime(now).replace(minute=0, second=0, microsecond=0)
    return [current - dt.timedelta(hours=HOURS - 1 - i) for i in range(HOURS)]


def hourly(connection_ids, since) -> dict[int, dict[dt.datetime, tuple[int, int]]]:
    """{connection: {hour: (accepted, rejected)}} from the delivery records, in one GROUP BY query."""
    rows = (
        Delivery.objects.filter(connection_id__in=connection_ids, started_at__gte=since)
        .annotate(hour=TruncHour("started_at"))
        .order_by()
        .values("connection_id", "hour")
        .annotate(accepted=Sum("accepted"), rejected=Sum("rejected"))
    )
    result: dict = {}
    for r in rows:
        result.setdefault(r["connection_id"], {})[r["hour"]] = (r["accepted"] or 0, r["rejected"] or 0)
    return result


def _buckets(slots, counts: dict) -> list[Bucket]:
    return [Bucket(f"{h:%H}:00–{h + dt.timedelta(hours=1):%H}:00", *counts.get(h, (0, 0))) for h in slots]


def headline(counts: dict[str, int]) -> tuple[str, str]:
    total = sum(counts.values())
    if not total:
        return "No connections yet", "quiet"
    attention = counts.get("faulted", 0) + counts.get("failing", 0)
    if attention:
        return f"{_connections(attention)} {'needs' if attention == 1 else 'need'} attention", "bad"
    warnings = counts.get("warning", 0)
    if warnings:
        return f"{_connections(warnings)} {'has a warning' if warnings == 1 else 'have warnings'}", "warn"
    ok = counts.get("ok", 0)
    if ok == total:
        everyone = {1: "The connection is", 2: "Both connections are"}.get(total, f"All {total} connections are")
        return f"{everyone} working", "good"
    others = [
        f"{counts[key]} {'is' if counts[key] == 1 else 'are'} {BY_KEY[key].label.lower()}"
        for key in ("paused", "checking", "unverified", "disconnecting")
        if counts.get(key)
    ]
    working = f"{_connections(ok)} {'is' if ok == 1 else 'are'} working" if ok else "None is working"
    return f"{working}; {', '.join(others)}", "quiet"


def _connections(n: int) -> str:
    return f"{n} connection{'' if n == 1 else 's'}"


def build(user, now=None) -> Dashboard:
    now = now or timezone.now()
    slots = hour_slots(now)
    conns = list(with_pending(Connection.objects.select_related("audience", "variant", "output")).order_by())
    per_hour = hourly([c.pk for c in conns], slots[0]) if conns else {}

    rows = []
    for conn in conns:
        key = state_of(conn)
        reason, hint = reason_of(conn, key)
        buckets = _buckets(slots, per_hour.get(conn.pk, {}))
        delivered, rejected = sum(b.good for b in buckets), sum(b.bad for b in buckets)
        rows.append(
            Row(
                conn=conn,
                state=BY_KEY.get(key, BY_KEY["unverified"]),
                reason=reason,
                hint=hint,
                quiet=verified_ago(conn),
                waiting=conn.pending,
                delivered=delivered,
                rejected=rejected,
                chart=hourly_bars(buckets, title=f"{conn}: delivered and rejected per hour, last 24 hours"),
                url=reverse("admin:connections_connection_change", args=[conn.pk]),
            )
        )
    rows.sort(key=lambda r: (RANK[r.state.key], r.conn.audience.name, r.conn.output.name))

    counts: dict[str, int] = {}
    for r in rows:
        counts[r.state.key] = counts.get(r.state.key, 0) + 1
    text, tone = headline(counts)

    every: dict = {}
    for per_conn in per_hour.values():
        for hour, (accepted, rejected) in per_conn.items():
            a, r = every.get(hour, (0, 0))
            every[hour] = (a + accepted, r + rejected)
    totals = _buckets(slots, every)
    ticks = [(i, f"{h:%H}:00") for i, h in enumerate(slots) if i % 6 == 0]
    chart = hourly_bars(
        totals, width=360, height=64, ticks=ticks, title="All connections: delivered and rejected per hour"
    )

    dashboard = Dashboard(
        rows=rows,
        counts=[(s, counts[s.key]) for s in STATES if counts.get(s.key)],
        headline=text,
        tone=tone,
        delivered=sum(t.good for t in totals),
        rejected=sum(t.bad for t in totals),
        chart=chart,
    )
    if user.has_perm("audiences.view_audience"):
        audiences = list(
            Audience.objects.annotate(n_connections=Count("connections")).order_by("-size", "name")[
                : AUDIENCES_SHOWN + 1
            ]
        )
        dashboard.more_audiences = len(audiences) > AUDIENCES_SHOWN
        dashboard.audiences = [
            AudienceRow(
                a,
                a.n_connections,
                reverse("admin:audiences_audience_change", args=[a.pk]),
                dates.ago_html(a.last_refreshed_at),
            )
            for a in audiences[:AUDIENCES_SHOWN]
        ]
    return dashboard
