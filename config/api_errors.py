"""API error answers: every 4xx names the field and the reason, nothing is a 500 for bad input.

Field errors keep DRF's shape, which is the path to the field: `{"profiles": {"3": {"identities": {"0":
{"value": ["..."]}}}}}` is `profiles[3].identities[0].value`. Errors about the body as a whole (too big,
not JSON, nested too deep) are `{"detail": "<one sentence>"}`.
"""

import drf_spectacular.openapi
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from config.api_filtering import filters_apply
from outputs.crypto import SecretsUnreadable


def exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(detail=exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
    elif isinstance(exc, RequestDataTooBig):
        # Django refuses the body before any parser sees it; left alone it becomes an HTML 400 page.
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        detail = f"The request body is larger than the {limit} bytes accepted; send fewer records per request."
        return Response({"detail": detail}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    elif isinstance(exc, SecretsUnreadable):
        # The deployment's configuration, not the request: nothing the client can change, and it says what to fix.
        return Response({"detail": str(exc)}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
    elif isinstance(exc, RecursionError):
        # Python's JSON parser gives up on bodies nested about a thousand levels deep.
        exc = exceptions.ParseError("The JSON body is nested too deeply to read.")
    return drf_exception_handler(exc, context)


# --- The error answers in the OpenAPI schema ----------------------------------------------------

_DETAIL = {
    "type": "object",
    "properties": {"detail": {"type": "string", "description": "What is wrong, in one sentence."}},
    "required": ["detail"],
}
_FIELDS = {
    "type": "object",
    "description": 'Each field that is wrong, with why: {"field": ["reason"]}, nested like the request '
    '({"profiles": {"3": {"identities": {"0": {"value": ["reason"]}}}}}); or {"detail": "sentence"} about '
    "the body as a whole.",
    "additionalProperties": {},
}
_ANSWERS = {
    "400": ("The request is not valid; the body names each field and why.", _FIELDS),
    "401": ("No valid API token.", _DETAIL),
    "403": ("The token may not do this.", _DETAIL),
    "404": ("Nothing here (or no such page).", _DETAIL),
    "413": ("The request body is larger than DATA_UPLOAD_MAX_MEMORY_SIZE.", _DETAIL),
    "415": ("The body is in a content type the API does not read (it reads JSON and form data).", _DETAIL),
    "429": ("Too many requests for this token (API_THROTTLE_RATE); the body says when to retry.", _DETAIL),
    "503": ("The stored secrets cannot be decrypted with SECRETS_ENCRYPTION_KEYS (a configuration problem).", _DETAIL),
}
_WITH_BODY = ("413", "415")


class AutoSchema(drf_spectacular.openapi.AutoSchema):
    """drf-spectacular's schema with the error answers every operation can give, so clients (and the
    fuzzer) can rely on it: each 4xx body is `{"detail": "..."}` or names the fields."""

    def _insert_field_validators(self, field, schema):
        super()._insert_field_validators(field, schema)
        if isinstance(field, serializers.URLField):
            # Django's URL validator accepts what RFC 3986 does not (a "{dc}" placeholder, a non-ASCII host):
            # "format: uri" would promise clients more than the field holds.
            for part in [schema, *schema.get("oneOf", ())]:
                if part.get("format") == "uri":
                    del part["format"]

    def get_filter_backends(self):
        # As at run time (config.api_filtering): a viewset's filters belong to its list, not to every action
        # that answers a list (an audience's members).
        return super().get_filter_backends() if filters_apply(self.view) else []

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        has_body = self.method in ("POST", "PUT", "PATCH")
        for code, (description, schema) in _ANSWERS.items():
            if code in responses or (code in _WITH_BODY and not has_body):
                continue
            responses[code] = {"description": description, "content": {"application/json": {"schema": schema}}}
        return responses
