"""Reading a BSS Avro upload (https://learn.microsoft.com/en-us/xandr/digital-platform-api/bss-avro-file-format).

The file is an Avro object container: its own header carries the schema it was written with, so it is read with
that schema, and each record is then checked against the user-segments record the page documents, independently
of how any client wrote it:

- ``uid`` is exactly one identifier: a long (the Xandr user ID), or one of the records ``device_id`` {id, domain:
  idfa, sha1udid, md5udid, openudid, aaid, windowsadid, rida, tifa, vida, lgudid}, ``eid`` {source, id},
  ``external_id`` {id, member_id} and ``ifa`` {id, type}, told apart by the union branch's name (Java, fastavro) or,
  as the page says the Python avro library does, by the record's field names;
- ``segments`` is an array of {id, code, member_id, expiration, timestamp, value}; a field left out takes the value
  the page's own example implies by leaving it out (0, or "" for code). ``expiration`` is in minutes: 0 the
  maximum (180 days), -1 removes the user, -2 the member's default expiration.
"""

import io
import json

import fastavro

DOMAINS = ("idfa", "sha1udid", "md5udid", "openudid", "aaid", "windowsadid", "rida", "tifa", "vida", "lgudid")
# Which identifier a union branch (or, without its name, a record's field names) stands for.
RECORDS = {
    "device_id": frozenset({"id", "domain"}),
    "eid": frozenset({"source", "id"}),
    "external_id": frozenset({"id", "member_id"}),
    "ifa": frozenset({"id", "type"}),
}
INTS = {"id": 0, "member_id": 0, "expiration": 0, "timestamp": 0, "value": 0}
MAGIC = b"Obj\x01"  # every Avro object container file starts so (Avro specification, "Object Container Files")


class UnreadableFile(Exception):
    pass


def is_avro(body: bytes) -> bool:
    return body[:4] == MAGIC


def read(body: bytes):
    """[(the record as text for the error log, (uid, uid type, [(segment id, expiration)]) or None)]."""
    try:
        records = list(fastavro.reader(io.BytesIO(body), return_record_name=True))
    except Exception as exc:  # fastavro fails damaged input with many exception types, all meaning "unreadable"
        raise UnreadableFile(str(exc)) from exc
    return [(_text(record), _parse(record)) for record in records]


def _parse(record):
    if not isinstance(record, dict):
        return None
    user, segments = _uid(record.get("uid")), record.get("segments")
    if user is None or not isinstance(segments, list) or not segments:
        return None
    entries = []
    for segment in segments:
        if not isinstance(segment, dict):
            return None
        fields = {**INTS, **{k: v for k, v in segment.items() if k in INTS}}
        if any(isinstance(v, bool) or not isinstance(v, int) for v in fields.values()):
            return None
        if not isinstance(segment.get("code", ""), str):
            return None
        # The sandbox keeps no per-member default expiration: -2 gets the maximum, as 0 does.
        entries.append((fields["id"], 0 if fields["expiration"] == -2 else fields["expiration"]))
    return (*user, entries)


def _uid(uid):
    """(uid, uid type) from the union's value, or None when it is none of the documented identifiers."""
    if isinstance(uid, int) and not isinstance(uid, bool):
        return str(uid), "xandr"
    if isinstance(uid, tuple) and len(uid) == 2:
        name, value = uid
    elif isinstance(uid, dict):
        name = next((n for n, fields in RECORDS.items() if set(uid) == fields), None)
        value = uid
    else:
        return None
    if name not in RECORDS or not isinstance(value, dict) or set(value) != RECORDS[name]:
        return None
    if not isinstance(value["id"], str) or not value["id"]:
        return None
    if name == "device_id":
        return (value["id"], value["domain"]) if value["domain"] in DOMAINS else None
    return value["id"], name


def _text(record):
    """The record as avro-tools writes it in JSON, union branches named: what the job's error log quotes."""

    def named(value):
        if isinstance(value, tuple) and len(value) == 2:
            return {value[0]: named(value[1])}
        if isinstance(value, dict):
            return {k: named(v) for k, v in value.items()}
        if isinstance(value, list):
            return [named(v) for v in value]
        return value

    record = named(record)
    if isinstance(record, dict) and isinstance(record.get("uid"), int):
        record["uid"] = {"long": record["uid"]}
    return json.dumps(record, separators=(",", ":"), default=str)
