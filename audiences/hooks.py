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


_variant_listeners: list = []


def on_variants(listener) -> object:
    """Register an object with `removed(audience, variants, disconnect)` and `split_changed(audience, before,
    after)` (connections does): see audiences/variants.py change_split."""
    if listener not in _variant_listeners:
        _variant_listeners.append(listener)
    return listener


def variants_removed(audience, variants, disconnect) -> str | None:
    """Before variants go: a listener refuses (ValidationError), or answers a sentence when the change must wait
    (their connections are removing members first), or None to let them go."""
    for listener in _variant_listeners:
        waiting = listener.removed(audience, variants, disconnect)
        if waiting:
            return waiting
    return None


def split_changed(audience, before, after) -> int:
    """After a split changed, in its transaction: `before` and `after` map variant IDs to their Scope. Returns how
    many messages the listeners queued."""
    return sum(listener.split_changed(audience, before, after) for listener in _variant_listeners)
