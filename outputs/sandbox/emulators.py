"""The partners the sandbox serves: every ``outputs/partners/<slug>/sandbox.py`` present.

Found by looking, not by a list: adding a partner's folder with its emulator adds it to the server, its routes,
its fault targets, its control routes and the demo seeding. Only the emulators are imported, never an adapter
(see the import contracts in pyproject.toml).
"""

import pkgutil
from importlib import import_module

import outputs.partners

from .common import Partner


def discover() -> list[type[Partner]]:
    found = []
    for info in sorted(pkgutil.iter_modules(outputs.partners.__path__), key=lambda i: i.name):
        if not info.ispkg:
            continue
        name = f"{outputs.partners.__name__}.{info.name}.sandbox"
        try:
            module = import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # a partner folder without an emulator
                continue
            raise
        emulator = next(
            (
                v
                for v in vars(module).values()
                if isinstance(v, type) and issubclass(v, Partner) and v.name == info.name
            ),
            None,
        )
        if emulator is None:
            raise LookupError(f"{name} defines no emulator named '{info.name}'.")
        found.append(emulator)
    return found
