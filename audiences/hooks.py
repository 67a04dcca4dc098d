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


_identity_listeners: list[Callable] = []


def on_identities_changed(listener: Callable) -> Callable:
    """Register `listener(removed, added)`, lists of (profile_id, type, value) of changed identities."""
    if listener not in _identity_listeners:
        _identity_listeners.append(listener)
    return listener


def identities_changed(removed, added) -> None:
    if removed or added:
        for listener in _identity_listeners:
            listener(removed, added)


_erasure_listeners: list[Callable] = []


def on_profiles_erased(listener: Callable) -> Callable:
    """Register `listener(profiles)`, a queryset of the profiles being erased, called just before their rows go."""
    if listener not in _erasure_listeners:
        _erasure_listeners.append(listener)
    return listener


def profiles_erased(profiles) -> None:
    for listener in _erasure_listeners:
        listener(profiles)
