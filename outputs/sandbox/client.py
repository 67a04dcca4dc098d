"""A small client for the sandbox's ``/_sandbox/`` control API, for tests and the demo.

client = SandboxClient(sandbox.url)
client.mailchimp_list("0123...cdef-us6", "a1b2c3d4e5", "Demo")
client.mailchimp_list_state("a1b2c3d4e5")["member_count"]
"""

import requests


class SandboxError(RuntimeError):
    """The control API refused a call; the message carries its status and error."""


class SandboxClient:
    def __init__(self, base_url, timeout=10):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()

    # --- where an output should point ----------------------------------------------------------------------
    def mailchimp_url(self, dc="us6"):
        return f"{self.base_url}/mailchimp/{dc}/3.0"

    def braze_url(self):
        return f"{self.base_url}/braze"

    def xandr_url(self):
        return f"{self.base_url}/xandr"

    def facebook_url(self, version="v21.0"):
        return f"{self.base_url}/facebook/{version}" if version else f"{self.base_url}/facebook"

    def webhook_url(self, name):
        return f"{self.base_url}/webhook/{name}"

    # --- plumbing ------------------------------------------------------------------------------------------
    def _call(self, method, path, payload=None):
        response = self.session.request(method, f"{self.base_url}/_sandbox/{path}", json=payload, timeout=self.timeout)
        try:
            body = response.json()
        except ValueError:
            body = {"error": response.text}
        if response.status_code >= 400:
            raise SandboxError(f"{method} /_sandbox/{path} answered {response.status_code}: {body.get('error', body)}")
        return body

    @staticmethod
    def _options(**values):
        return {k: v for k, v in values.items() if v is not None}

    # --- general -------------------------------------------------------------------------------------------
    def index(self):
        return self._call("GET", "")

    def reset(self):
        return self._call("POST", "reset")

    def seed_demo(self):
        return self._call("POST", "seed/demo")

    def stats(self):
        return self._call("GET", "stats")

    def revoke(self, partner, credential):
        return self._call("POST", "revoke", {"partner": partner, "credential": credential})

    def advance_clock(self, days):
        return self._call("POST", "clock", {"advance_days": days})

    def fault(
        self,
        partner,
        kind,
        path=None,
        status=None,
        retry_after=None,
        delay=None,
        count=None,
        probability=None,
        seed=None,
        body=None,
        **options,
    ):
        """Inject a fault; `options` are the fields of the answer kinds (content_type, headers, encoding …)."""
        spec = self._options(
            **options,
            partner=partner,
            kind=kind,
            path=path,
            status=status,
            retry_after=retry_after,
            delay=delay,
            count=count,
            probability=probability,
            seed=seed,
            body=body,
        )
        return self._call("POST", "faults", spec)

    def faults(self):
        return self._call("GET", "faults")["faults"]

    def clear_faults(self):
        return self._call("DELETE", "faults")

    # --- Mailchimp -----------------------------------------------------------------------------------------
    def mailchimp_account(self, api_key):
        return self._call("POST", "mailchimp/accounts", {"api_key": api_key})

    def mailchimp_list(self, api_key, list_id, name=None, double_optin=False, required_merge_fields=None):
        return self._call(
            "POST",
            "mailchimp/lists",
            {
                "api_key": api_key,
                "list_id": list_id,
                "name": name,
                "double_optin": double_optin,
                "required_merge_fields": required_merge_fields,
            },
        )

    def delete_mailchimp_list(self, list_id):
        return self._call("DELETE", f"mailchimp/lists/{list_id}")

    def mailchimp_list_state(self, list_id):
        return self._call("GET", f"mailchimp/lists/{list_id}")

    def mailchimp_rejection(self, email, kind, count=1):
        return self._call("POST", "mailchimp/rejections", {"email": email, "kind": kind, "count": count})

    def mailchimp_contact_acts(self, list_id, email, action):
        """The person clicks the confirmation link ("confirm") or the unsubscribe link ("unsubscribe")."""
        return self._call("POST", "mailchimp/contact_acts", {"list_id": list_id, "email": email, "action": action})

    # --- Braze ---------------------------------------------------------------------------------------------
    def braze_key(self, api_key, permissions=None):
        return self._call("POST", "braze/keys", self._options(api_key=api_key, permissions=permissions))

    def braze_users(self):
        return self._call("GET", "braze/users")

    def braze_rate_limit(self, per_minute):
        return self._call("POST", "braze/rate_limit", {"per_minute": per_minute})

    def braze_array_cap(self, cap):
        return self._call("POST", "braze/array_cap", {"cap": cap})

    def braze_maintenance(self, on):
        return self._call("POST", "braze/maintenance", {"on": on})

    # --- AppNexus / Xandr ----------------------------------------------------------------------------------
    def xandr_account(self, username, password, member_id, file_format=None):
        """`file_format` ("avro" or "legacy"): the only format the member's uploads may use; None: either."""
        body = {"username": username, "password": password, "member_id": member_id}
        return self._call("POST", "xandr/accounts", {**body, "file_format": file_format} if file_format else body)

    def xandr_segment(self, member_id, segment_id):
        return self._call("POST", "xandr/segments", {"member_id": member_id, "segment_id": segment_id})

    def xandr_segment_state(self, segment_id):
        return self._call("GET", f"xandr/segments/{segment_id}")

    # --- Facebook ------------------------------------------------------------------------------------------
    def facebook_token(
        self, access_token, ad_account_id, tos_accepted=True, business_verified=True, admin=True, expired=False
    ):
        return self._call(
            "POST",
            "facebook/tokens",
            {
                "access_token": access_token,
                "ad_account_id": ad_account_id,
                "tos_accepted": tos_accepted,
                "business_verified": business_verified,
                "admin": admin,
                "expired": expired,
            },
        )

    def facebook_audience(self, audience_id, ad_account_id, name=None, flagged=False):
        return self._call(
            "POST",
            "facebook/audiences",
            {"audience_id": audience_id, "ad_account_id": ad_account_id, "name": name, "flagged": flagged},
        )

    def delete_facebook_audience(self, audience_id):
        return self._call("DELETE", f"facebook/audiences/{audience_id}")

    def facebook_audience_state(self, audience_id):
        return self._call("GET", f"facebook/audiences/{audience_id}")

    def facebook_rate_limit(self, ad_account_id, calls_per_hour):
        return self._call(
            "POST", "facebook/rate_limit", {"ad_account_id": ad_account_id, "calls_per_hour": calls_per_hour}
        )

    def facebook_advance(self, minutes):
        return self._call("POST", "facebook/clock", {"minutes": minutes})

    # --- webhook -------------------------------------------------------------------------------------------
    def webhook_endpoint(self, name, secret, status=200):
        return self._call("POST", "webhook/endpoints", {"name": name, "secret": secret, "status": status})

    def webhook_deliveries(self, name):
        return self._call("GET", f"webhook/endpoints/{name}")["deliveries"]

    def close(self):
        self.session.close()
