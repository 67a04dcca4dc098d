"""What Google Ads' failures are called and what to do about them, as people read them in checks and outcomes."""

from outputs.partners.base import Outcome
from outputs.partners.plumbing import TRANSIENT_HINT

SCOPE = "https://www.googleapis.com/auth/adwords"

HINTS = {
    "expired": "Generate a new refresh token (scope " + SCOPE + ") with a Google account that can open customer "
    "{customer} in Google Ads, paste it into this output, then resume the connection. A refresh token lapses when "
    "it is revoked, unused for six months, or issued while the OAuth consent screen was in Testing (7 days).",
    "client": "Check the OAuth client ID and client secret of this output: they must be the pair the refresh token "
    "was issued to (Google Cloud console → APIs & Services → Credentials).",
    "scope": "Generate a new refresh token that includes the scope " + SCOPE + " and paste it into this output.",
    "developer_token": "Check the developer token of this output (Google Ads → Tools → API Center of your manager "
    "account); a token with test access reaches only test accounts, so apply for Basic or Standard access.",
    "access": "Give the Google account of this refresh token access to customer {customer}, or set the login "
    "customer ID of this output to the manager account through which it has access.",
    "terms": "Someone with admin access to customer {customer} must accept the Customer Match terms (Google Ads → "
    "Tools → Audience manager → Customer list), then resume this connection.",
    "eligible": "Customer {customer} is not allowed to use Customer Match: it needs a good history of policy "
    "compliance and payments (https://support.google.com/adspolicy/answer/6299717). Connect a list of an eligible "
    "account, or ask Google Ads support.",
    "list": "Check the user list ID of this connection: it must be a Customer Match list of customer {customer} "
    "(Google Ads → Tools → Audience manager, or user_list.id in the API).",
    "list_type": "Connect a Customer Match list (type CRM_BASED) whose upload key type is the one set on this "
    "connection ({key_type}), or change this connection's upload key type to the list's.",
    "refused": "Google Ads refused the request in a way Audience Relay does not know; its answer is above. Check "
    "the settings of this output and connection against it.",
    "transient": TRANSIENT_HINT,
}


def still_processing(job: str) -> Outcome:
    return Outcome("retry", f"Google Ads is still processing upload job {job}; the job will be checked again.")
