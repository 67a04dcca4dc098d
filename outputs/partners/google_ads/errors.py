"""Google Ads errors read: an answer as a retry, a rejection or a fault, and the operations a partial failure names.

https://developers.google.com/google-ads/api/docs/common-errors
"""

from __future__ import annotations

import re

from outputs.partners import http
from outputs.partners.base import Fault, Outcome
from outputs.partners.google_ads.hints import HINTS
from outputs.partners.google_ads.identifiers import KEY_LABELS, list_key_type
from outputs.partners.plumbing import sentence

THROTTLE_DEFAULT = 30.0  # seconds, when Google says RESOURCE_EXHAUSTED without a delay
TEMPORARY = {"INTERNAL", "UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED"}


def classify(partner, s, response, body: dict, connection_settings) -> tuple[Outcome | None, Fault | None]:
    """A Google Ads error as a retry, a rejection or a fault, by its status and its GoogleAdsFailure codes."""
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    status, rpc = response.status_code, str(error.get("status") or "")
    codes, messages, reason, delay = {}, [], "", None
    for detail in error.get("details") or []:
        if not isinstance(detail, dict):
            continue
        for item in detail.get("errors") or []:
            if isinstance(item, dict):
                codes.update({k: str(v) for k, v in (item.get("errorCode") or {}).items()})
                if item.get("message"):
                    messages.append(str(item["message"]))
                quota = (item.get("details") or {}).get("quotaErrorDetails") or {}
                delay = seconds(quota.get("retryDelay")) or delay
        reason = str(detail.get("reason") or reason)
        delay = seconds(detail.get("retryDelay")) or delay
    said = partner.scrub(s.account, messages[0] if messages else str(error.get("message") or ""), s.token)
    values = set(codes.values())
    customer = s.shown
    list_id = (connection_settings or {}).get("user_list_id", "")

    if status == 429 or rpc == "RESOURCE_EXHAUSTED" or "quotaError" in codes:
        wait = delay or http.retry_after(response) or THROTTLE_DEFAULT
        return Outcome("retry", sentence("Google Ads asked us to slow down", said), wait), None
    if status >= 500 or rpc in TEMPORARY or "CONCURRENT_MODIFICATION" in values:
        return Outcome("retry", f"Google Ads answered with HTTP {status}, a temporary error."), None
    if reason == "ACCESS_TOKEN_SCOPE_INSUFFICIENT":
        message = "The refresh token of this output was not granted the Google Ads API scope."
        return None, Fault("credentials", message, HINTS["scope"])
    if any("DEVELOPER_TOKEN" in v for v in values):
        code = next(v for v in values if "DEVELOPER_TOKEN" in v)
        message = f"Google Ads did not accept the developer token of this output ({code})."
        return None, Fault("credentials", message, HINTS["developer_token"])
    if status == 401:
        message = "Google Ads did not accept the access token obtained with the refresh token of this output."
        return None, Fault("credentials", message, HINTS["expired"].format(customer=customer))
    if "USER_PERMISSION_DENIED" in values or "CUSTOMER_NOT_ENABLED" in values:
        message = f"The Google account of this output's refresh token may not access customer {customer}."
        return None, Fault("account", message, HINTS["access"].format(customer=customer))
    if "CUSTOMER_NOT_ACCEPTED_CUSTOMER_DATA_TERMS" in values:
        message = f"Customer {customer} has not accepted the Customer Match terms."
        return None, Fault("account", message, HINTS["terms"].format(customer=customer))
    if "notAllowlistedError" in codes or any(v.startswith("NOT_ON_ALLOWLIST") for v in values):
        message = f"Customer {customer} is not eligible for Customer Match."
        return None, Fault("account", message, HINTS["eligible"].format(customer=customer))
    if list_id and ({"INVALID_USER_LIST_ID", "RESOURCE_NOT_FOUND"} & values or status == 404):
        return None, missing_list(s, list_id)
    if list_id and {"INVALID_USER_LIST_TYPE", "INCOMPATIBLE_UPLOAD_KEY_TYPE"} & values:
        key_type = list_key_type(connection_settings)
        message = f"Google Ads user list {list_id} is not a Customer Match list of {KEY_LABELS[key_type]}."
        return None, Fault("destination", message, HINTS["list_type"].format(key_type=key_type))
    if status in (403, 404):
        message = sentence(f"Google Ads refused the request (HTTP {status})", said)
        return None, Fault("account", message, HINTS["refused"])
    return Outcome("rejected", sentence("Google Ads rejected the request", said or f"HTTP {status}")), None


def refused_operations(body: dict) -> dict[int, str]:
    """Operation index -> why, from an addOperations answer's partial failure error (GoogleAdsFailure errors whose
    location starts with operations[index])."""
    refused = {}
    failure = body.get("partialFailureError") or {}
    for detail in failure.get("details") or [] if isinstance(failure, dict) else []:
        for item in (detail.get("errors") or []) if isinstance(detail, dict) else []:
            path = ((item.get("location") or {}).get("fieldPathElements") or [{}]) if isinstance(item, dict) else [{}]
            index = integer(path[0].get("index")) if path and path[0].get("fieldName") == "operations" else None
            if index is not None:
                code = "/".join(str(v) for v in (item.get("errorCode") or {}).values())
                said = str(item.get("message") or "").rstrip(".")
                refused.setdefault(
                    index, f"Google Ads refused this identifier: {said}" + (f" ({code})." if code else ".")
                )
    return refused


def missing_list(s, list_id) -> Fault:
    message = f"Google Ads user list {list_id} was not found in customer {s.shown}."
    return Fault("destination", message, HINTS["list"].format(customer=s.shown))


def seconds(value) -> float | None:
    # A protobuf Duration in JSON: "30s", "1.5s".
    match = re.fullmatch(r"(\d+(?:\.\d+)?)s", str(value or ""))
    return float(match.group(1)) if match else None


def integer(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
