"""Where the outputs app tells the rest of the project that an output changed.

`outputs` knows nothing of `connections`; the forwarding side registers a listener here in its
AppConfig.ready(). Listeners run inside the transaction that saved the output.
"""

from collections.abc import Callable

_changed_listeners: list[Callable] = []


def on_output_changed(listener: Callable) -> Callable:
    """Register `listener(output)`; it is called after an output's settings, secrets or base URL changed."""
    if listener not in _changed_listeners:
        _changed_listeners.append(listener)
    return listener


def output_changed(output) -> None:
    for listener in _changed_listeners:
        listener(output)
