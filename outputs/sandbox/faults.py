"""Fault injection: the next N matching partner requests (or a seeded random share of them) misbehave.

Kinds:
- ``status``: answer that status with the partner's own error body for it (and ``Retry-After`` when given);
- ``timeout``: hold the request ``delay`` seconds (default 30, at most 60), then answer normally;
- ``drop``: close the connection without an answer;
- ``slow``: wait ``delay`` seconds (default 1), then answer normally.
"""

import random
import threading

PARTNERS = ("mailchimp", "braze", "xandr", "facebook", "webhook")
KINDS = ("status", "timeout", "drop", "slow")
MAX_DELAY = 60.0


class FaultError(ValueError):
    """A fault specification that cannot be used; the message names the field."""


class Fault:
    __slots__ = (
        "id",
        "partner",
        "path",
        "kind",
        "status",
        "retry_after",
        "delay",
        "remaining",
        "probability",
        "rng",
        "body",
        "seed",
        "applied",
    )

    def describe(self):
        out = {"id": self.id, "partner": self.partner, "path": self.path, "kind": self.kind, "applied": self.applied}
        if self.kind == "status":
            out["status"] = self.status
            if self.retry_after is not None:
                out["retry_after"] = self.retry_after
            if self.body is not None:
                out["body"] = self.body
        if self.kind in ("timeout", "slow"):
            out["delay"] = self.delay
        if self.probability is None:
            out["remaining"] = self.remaining
        else:
            out["probability"] = self.probability
            out["seed"] = self.seed
        return out


def _number(spec, field, default, minimum=0.0, maximum=None):
    value = spec.get(field, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FaultError(f"'{field}' must be a number, not {value!r}.")
    if value < minimum:
        raise FaultError(f"'{field}' must be at least {minimum}, not {value!r}.")
    if maximum is not None:
        value = min(value, maximum)
    return value


class FaultBook:
    def __init__(self):
        self._lock = threading.Lock()
        self._faults = []
        self._next_id = 1

    def add(self, spec):
        if not isinstance(spec, dict):
            raise FaultError("The fault must be a JSON object.")
        partner = spec.get("partner", "*")
        if partner not in PARTNERS and partner != "*":
            raise FaultError(f"'partner' must be one of {', '.join(PARTNERS)} (or '*'), not {partner!r}.")
        kind = spec.get("kind")
        if kind not in KINDS:
            raise FaultError(f"'kind' must be one of {', '.join(KINDS)}, not {kind!r}.")
        path = spec.get("path") or ""
        if not isinstance(path, str):
            raise FaultError("'path' must be a string (a substring of the request path).")
        fault = Fault()
        fault.partner, fault.kind, fault.path, fault.applied = partner, kind, path, 0
        fault.status = None
        fault.retry_after = None
        fault.body = spec.get("body")
        fault.delay = None
        if kind == "status":
            status = spec.get("status", 503)
            if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
                raise FaultError(f"'status' must be an HTTP error status between 400 and 599, not {status!r}.")
            fault.status = status
            fault.retry_after = _number(spec, "retry_after", None)
        elif kind == "timeout":
            fault.delay = _number(spec, "delay", 30.0, maximum=MAX_DELAY)
        elif kind == "slow":
            fault.delay = _number(spec, "delay", 1.0, maximum=MAX_DELAY)
        probability = spec.get("probability")
        if probability is None:
            count = spec.get("count", 1)
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise FaultError(f"'count' must be a positive integer, not {count!r}.")
            fault.remaining, fault.probability, fault.rng, fault.seed = count, None, None, None
        else:
            if isinstance(probability, bool) or not isinstance(probability, (int, float)) or not 0 <= probability <= 1:
                raise FaultError(f"'probability' must be a number between 0 and 1, not {probability!r}.")
            seed = spec.get("seed")
            if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, str))):
                raise FaultError(f"'seed' must be an integer or a string, not {seed!r}.")
            fault.remaining, fault.probability, fault.seed = None, float(probability), seed
            fault.rng = random.Random(seed)
        with self._lock:
            fault.id = self._next_id
            self._next_id += 1
            self._faults.append(fault)
        return fault.describe()

    def clear(self):
        with self._lock:
            cleared = len(self._faults)
            self._faults = []
        return cleared

    def describe(self):
        with self._lock:
            return [f.describe() for f in self._faults]

    def take(self, partner, target):
        """The fault to apply to this request, if any; count-based faults are used up here."""
        if not self._faults:  # the common case costs no lock
            return None
        with self._lock:
            for fault in self._faults:
                if fault.partner != "*" and fault.partner != partner:
                    continue
                if fault.path and fault.path not in target:
                    continue
                if fault.probability is None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                elif fault.rng.random() >= fault.probability:
                    continue
                fault.applied += 1
                return fault
        return None
