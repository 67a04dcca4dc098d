"""The partner sandbox: an in-memory emulation of each partner's real HTTP API (Mailchimp, Braze, AppNexus/Xandr,
Facebook Custom Audiences, our signed webhook), written from the partners' public API references.

It never imports ``outputs.partners`` (our adapters) nor Django, so a misreading of a partner's API cannot hide by
being shared by both sides. See docs/sandbox.md.
"""

from .server import PartnerSandbox

__all__ = ["PartnerSandbox", "SandboxClient"]


def __getattr__(name):
    # The client needs ``requests``; the server needs only the stdlib, so import the client lazily.
    if name == "SandboxClient":
        from .client import SandboxClient

        return SandboxClient
    raise AttributeError(name)
