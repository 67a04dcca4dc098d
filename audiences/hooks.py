"""Where the audiences app tells the rest of the project that membership changed.

`audiences` knows nothing of `connections`; the forwarding side registers a
listener here in its AppConfig.ready(). Listeners run inside the transaction
that wrote the change, so whatever they write commits (or rolls back) with it.
"""

from collections.abc import Callable

_membership_listeners: list[Callable] = []


def on_membership_changed(listener: Callable) -> Callable:
    """Register `listener(run)`; it is called with each RefreshRun that changed membership."""
    if listener not in _membership_listeners:
        _membership_listeners.append(listener)
    return listener


def membership_changed(run) -> None:
    for listener in _membership_listeners:
        listener(run)
