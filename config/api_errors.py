"""API error answers: every 4xx names the field and the reason, nothing is a 500 for bad input.

Field errors keep DRF's shape, which is the path to the field: `{"profiles": {"3": {"identities": {"0":
{"value": ["..."]}}}}}` is `profiles[3].identities[0].value`. Errors about the body as a whole (too big,
not JSON, nested too deep) are `{"detail": "<one sentence>"}`.
"""

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(detail=exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
    elif isinstance(exc, RequestDataTooBig):
        # Django refuses the body before any parser sees it; left alone it becomes an HTML 400 page.
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        detail = f"The request body is larger than the {limit} bytes accepted; send fewer records per request."
        return Response({"detail": detail}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    elif isinstance(exc, RecursionError):
        # Python's JSON parser gives up on bodies nested about a thousand levels deep.
        exc = exceptions.ParseError("The JSON body is nested too deeply to read.")
    return drf_exception_handler(exc, context)
