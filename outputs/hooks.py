"""Where the outputs app tells the rest of the project that an output changed.

`outputs` knows nothing of `connections`; the forwarding side registers a listener here in its
AppConfig.ready(). Listeners run inside the transaction that saved the output.
"""

from collections.abc import Callable
from contextlib import contextmanager

_changed_listeners: list[Callable] = []
_request_slots: list[Callable] = []


class SlotsBusy(Exception):
    """Every request slot of the output stayed in use: the request to the partner was not made."""


def on_output_changed(listener: Callable) -> Callable:
    """Register `listener(output)`; it is called after an output's settings, secrets or base URL changed."""
    if listener not in _changed_listeners:
        _changed_listeners.append(listener)
    return listener


def output_changed(output) -> None:
    for listener in _changed_listeners:
        listener(output)


def on_partner_request(provider: Callable) -> Callable:
    """Register `provider(output)`, a context manager that holds one of the output's request slots."""
    if provider not in _request_slots:
        _request_slots.append(provider)
    return provider


@contextmanager
def partner_request(output):
    """Around a request to the partner made outside forwarding (a check): it takes one of the output's request
    slots like a forwarding request, so checks and forwarding together stay within the partner's limit.
    Raises SlotsBusy when none came free in time."""
    if not _request_slots:
        yield
        return
    with _request_slots[0](output):
        yield
