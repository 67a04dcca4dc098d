"""Waiting for something another thread or process does, without betting on how long it takes."""

import time


def wait_until(predicate, timeout: float, what: str, every: float = 0.02):
    """Poll `predicate` until it returns something true and return that; fail with a sentence after `timeout` s.

    The timeout is a deadline for a hung test, not a measure of speed: make it generous.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"Waited {timeout:g} seconds and {what} never happened.")
        time.sleep(every)
