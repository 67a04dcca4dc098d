"""Guards an app puts on another app's DELETE endpoint without reaching into its viewset.

The owning viewset declares `delete_guards = DeleteGuards()`, runs them in its `destroy` and documents them
with `delete_guards.parameters` and `delete_guards.responses`; an app whose rows depend on the deleted object
registers a guard in its AppConfig.ready() (connections refuses to delete a connected audience or output, or
disconnects it first when told how). drf-spectacular reads the two collections when the schema is generated,
after every app is ready, so what a guard registers is documented.
"""

from collections.abc import Callable

from drf_spectacular.utils import OpenApiResponse


class DeleteGuards:
    def __init__(self):
        self._guards: list[Callable] = []
        self.parameters: list = []
        self.responses: dict = {204: OpenApiResponse(description="Deleted.")}

    def register(self, guard: Callable, parameters=(), responses=None) -> None:
        """Add `guard(request, obj)`: it raises a ValidationError to refuse the delete, answers for it with a
        Response, or returns None to let it go ahead. `parameters` and `responses` document what it adds."""
        if guard in self._guards:
            return
        self._guards.append(guard)
        self.parameters.extend(p for p in parameters if p not in self.parameters)
        merged = sorted({**self.responses, **(responses or {})}.items())
        self.responses.clear()  # in place: the viewset's `extend_schema` holds this very dict
        self.responses.update(merged)

    def run(self, request, obj):
        """The first guard's answer, or None when every guard lets the delete go ahead."""
        for guard in self._guards:
            response = guard(request, obj)
            if response is not None:
                return response
        return None
