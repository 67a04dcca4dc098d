"""What Xandr's failures are called and what to do about them, as people read them in checks and outcomes."""

from outputs.partners.base import Fault, Outcome
from outputs.partners.plumbing import TRANSIENT_HINT

HINTS = {
    "login": "Check the username and password of this output; the user needs API access to Xandr "
    "(your Xandr representative can enable it).",
    "disabled": "Use another Xandr user with API access, or ask your Xandr representative to reactivate this one.",
    "password_expired": "Reset the password in Xandr and paste the new one into this output.",
    "base_url": "Check the base URL override of this output: empty for Xandr itself (https://api.appnexus.com); "
    "`manage.py partner_sandbox` prints the sandbox's.",
    "no_access": "Check the member ID of this output, and ask your Xandr representative to give this user "
    "access to member {member} and to enable the Batch Segment Service for it.",
    "segment": "Check the segment ID of this connection: it must be a segment of member {member} "
    "(Audience > Segments in Xandr).",
    "inactive": "Activate segment {segment} in Xandr, or connect an active segment.",
    "refused": "Xandr refused the request in a way Audience Relay does not know; its answer is above. Check the "
    "settings of this output and connection, and ask your Xandr representative if they look right.",
    "transient": TRANSIENT_HINT,
}

ENTRY_REASONS = {
    "num_invalid_user": "Xandr has not seen this device ID, so it cannot be added to the segment.",
    "num_invalid_format": "Xandr could not read the entry of this device ID in the upload file.",
    "num_invalid_timestamp": "Xandr rejected the timestamp of this device ID's entry.",
    "num_past_expiration": "Xandr rejected the entry of this device ID because its expiration has passed.",
}


def auth_fault(body: dict) -> Fault:
    error_id = body.get("error_id")
    if error_id == "NOAUTH_DISABLED":
        return Fault("credentials", "The Xandr user of this output has been deactivated.", HINTS["disabled"])
    if error_id == "NOAUTH_EXPIRED":
        return Fault("credentials", "The password of this output's Xandr user has expired.", HINTS["password_expired"])
    return Fault("credentials", "Xandr refused the username and password of this output.", HINTS["login"])


def missing_segment(member: int, segment: int) -> Fault:
    message = f"Xandr segment {segment} was not found in member {member}."
    return Fault("destination", message, HINTS["segment"].format(member=member))


def still_processing(job_id: str) -> Outcome:
    return Outcome("retry", f"Xandr is still processing upload job {job_id}; the upload will be checked again.")
