"""The files Xandr's Batch Segment Service reads: BSS Avro (preferred) or the legacy text format.

Which one a member's uploads must use is set up with Xandr when the service is enabled for the member ("Decide
which file format you plan to use: BSS Avro File Format is preferred, but you can use the Legacy BSS File Format if
you don't need to support external IDs", Initial BSS account setup); the upload itself (job, upload URL, polling)
is the same for both.

https://learn.microsoft.com/en-us/xandr/digital-platform-api/initial-bss-account-setup
https://learn.microsoft.com/en-us/xandr/digital-platform-api/bss-avro-file-format
https://learn.microsoft.com/en-us/xandr/digital-platform-api/legacy-bss-file-format
"""

from __future__ import annotations

import functools
import io
import json
import re
from pathlib import Path
from typing import NamedTuple

import fastavro

AVRO, LEGACY = "avro", "legacy"
LABELS = {AVRO: "BSS Avro", LEGACY: "legacy BSS"}
# Outputs saved before the choice existed have no "file_format": they keep the legacy format (outputs migration
# 0003 also writes it on them, so a form that saves them cannot switch them silently).
MISSING = LEGACY

# Legacy format: SEPARATOR5 codes for mobile device IDs, appended as "^<code>".
DEVICE_CODES = {"ios_idfa": "3", "android_aaid": "8"}
# Avro format: the device_id record's domain.
DEVICE_DOMAINS = {"ios_idfa": "idfa", "android_aaid": "aaid"}


class Entry(NamedTuple):
    """One device ID added to (or removed from) one segment: a line of a legacy file, a segment of an Avro record."""

    uid: str
    identity_type: str
    expiration: int  # minutes: 0 = Xandr's maximum (180 days), -1 = remove


def file_format(output_settings: dict) -> str:
    return output_settings.get("file_format") or MISSING


def render(fmt: str, segment: int, entries) -> bytes:
    return _avro(segment, entries) if fmt == AVRO else _legacy(segment, entries)


def _legacy(segment: int, entries) -> bytes:
    lines = [f"{e.uid},{segment}:{e.expiration}^{DEVICE_CODES[e.identity_type]}" for e in entries]
    return ("\n".join(lines) + "\n").encode("latin-1", "replace")  # legacy BSS files are Latin-1


def _avro(segment: int, entries) -> bytes:
    # One record per device ID, with every change to its segments; the other segment fields keep the schema's
    # defaults (no code, "live" now, no value).
    records: dict[tuple[str, str], list[dict]] = {}
    for e in entries:
        key = (e.uid, DEVICE_DOMAINS[e.identity_type])
        records.setdefault(key, []).append({"id": segment, "expiration": e.expiration})
    out = io.BytesIO()
    rows = (
        {"uid": ("device_id", {"id": uid, "domain": domain}), "segments": segments}
        for (uid, domain), segments in records.items()
    )
    # Deflate is the compression the format's page recommends; it is inside the container, block by block.
    fastavro.writer(out, schema(), rows, codec="deflate")
    return out.getvalue()


@functools.cache
def schema():
    return fastavro.parse_schema(json.loads((Path(__file__).parent / "bss.avsc").read_text()))


# What separates the fields of an error log line, a legacy line ("uid,seg:exp^8") or a record written out as JSON.
_LOG_SEPARATORS = re.compile(r"""[\s,;:^"'{}\[\]()]+""")


def named_ids(error_log: str) -> dict[str, str]:
    """{identifier: counter} from a job's error log: each line is "<counter>-<the line or record it rejects>"."""
    named = {}
    for line in error_log.splitlines():
        counter, _, rejected = line.strip().partition("-")
        for token in _LOG_SEPARATORS.split(rejected):
            named.setdefault(token, counter)
    return named
