"""What partner modules share to talk to their partner, written once: stopping a batch, turning what stopped
it into a verification check, wording a partner's answer as one sentence, and cutting a batch to a partner's
request size.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from outputs.partners import http
from outputs.partners.base import Check, Fault, Outcome, SendResult

TRANSIENT_HINT = "This is usually temporary; verification runs again on its schedule."


class Stop(Exception):
    """The rest of the batch cannot go: a fault a person must fix, or an outcome every unsettled message shares.

    Raised from a partner module's request helpers, or `from` the TransportError that left no answer (so that
    verification can word that one the same way for every partner: `failing`).
    """

    def __init__(self, outcome: Outcome | None = None, fault: Fault | None = None):
        super().__init__(outcome.reason if outcome else fault.message)
        self.outcome, self.fault = outcome, fault

    def settle(self, result: SendResult, messages) -> None:
        """Record on `result` what stopped the batch: the fault, or the outcome for each message still unsettled."""
        if self.fault:
            result.fault = self.fault
        else:
            result.mark_all(messages, self.outcome)


def failing(name: str, stop: Stop, refused_hint: str) -> Check:
    """A check from what stopped it: a fault fails it, a temporary answer warns, no answer is the caller's.

    `refused_hint` goes with a refusal the partner module does not know how to read.
    """
    if stop.fault:
        return Check(name, "failing", stop.fault.message, stop.fault.hint)
    if isinstance(stop.__cause__, http.TransportError):
        raise stop.__cause__
    if stop.outcome.status == "retry":
        return Check(name, "warning", f"Could not check the {name}: {stop.outcome.reason}", TRANSIENT_HINT)
    return Check(name, "failing", stop.outcome.reason, refused_hint)


def sentence(lead: str, detail: str) -> str:
    """`lead`, then the partner's own words when it gave some, as one sentence that ends like one."""
    text = f"{lead}: {detail}" if detail else lead
    return text if text.endswith((".", "!", "?", "…")) else f"{text}."


def chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    """`items` in runs of at most `size`: callers hand over at most a partner's batch size, but cutting again
    keeps a bigger list within the partner's limit a request instead of failing it."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
