"""Settings for Audience Relay, read from the environment with django-environ.

Every setting has a safe local default except the secrets, which production
(DEBUG off) refuses to start without. See .env.example for the list.
"""

import os
import re
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# https://docs.djangoproject.com/en/5.2/ref/settings/#debug
DEBUG = env.bool("DEBUG", default=True)

# https://docs.djangoproject.com/en/5.2/ref/settings/#secret-key
# A development key only while DEBUG is on: a production process without
# SECRET_KEY must fail at start-up rather than sign sessions with a known key.
if DEBUG:
    SECRET_KEY = env("SECRET_KEY", default="dev-only-insecure-key-do-not-use-in-production")
else:
    SECRET_KEY = env("SECRET_KEY", default="")
    if not SECRET_KEY:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")

# https://docs.djangoproject.com/en/5.2/ref/settings/#allowed-hosts
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "audiences",
    "outputs",
    "connections",
    "staff",
    # After our apps: their management commands come first (connections' `qcluster` ends once it has stopped).
    "django_q",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "staff.links.CurrentRequest",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "config.middleware.ConfigurationProblemMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# https://docs.djangoproject.com/en/5.2/ref/settings/#databases
# Default: an embedded SQLite file under var/ (git-ignored). For PostgreSQL:
# DATABASE_URL=postgres://postgres@127.0.0.1:5432/audience_relay
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'audience_relay.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web process read while a qcluster worker writes; the
    # timeout makes a writer wait for the lock instead of failing at once.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    # A file (not :memory:) so that subprocesses in the tests can open it, one per
    # test run so that two runs on one machine do not share it.
    DATABASES["default"].setdefault("TEST", {})["NAME"] = str(VAR_DIR / f"test-{os.getpid()}.sqlite3")
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True
# https://docs.djangoproject.com/en/5.2/ref/settings/#format-module-path
FORMAT_MODULE_PATH = ["config.formats"]

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

# https://www.django-rest-framework.org/api-guide/settings/
REST_FRAMEWORK = {
    # Hashed API tokens (staff/api_auth.py) first: their 401 names why; staff signed in to the admin use the session.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "staff.api_auth.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "staff.api_auth.TokenScope",
        "staff.api_auth.StaffModelPermissions",
        "audiences.permissions.SeesIdentities",  # answers holding identities need their own permission
    ],
    # API_THROTTLE_RATE per token, read at each request by the throttle itself.
    "DEFAULT_THROTTLE_CLASSES": ["staff.api_auth.ApiThrottle"],
    "DEFAULT_SCHEMA_CLASS": "config.api_errors.AutoSchema",  # documents the error answers too
    "DEFAULT_FILTER_BACKENDS": ["config.api_filtering.ListFilterBackend"],  # a viewset's filters: its list only
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": env.int("API_PAGE_SIZE", default=100),
    "EXCEPTION_HANDLER": "config.api_errors.exception_handler",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Audience Relay API",
    "DESCRIPTION": "Profiles, events and audiences in; audience membership out to partners.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # /api/docs/ loads Swagger UI from our static files (drf-spectacular-sidecar), pinned by the package's
    # version, not from a CDN: the docs work offline and show the same UI until the package is upgraded.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "ConnectionStatusEnum": "connections.models.Connection.Status",
        "MessageStateEnum": "connections.models.OutboxMessage.State",
        "VerificationStatusEnum": "connections.models.Connection.Verification",
        "IdentityTypeEnum": "identities.IdentityType",
        "CheckStatusEnum": ["ok", "warning", "failing"],  # one verification check's status
    },
}

# https://docs.djangoproject.com/en/5.2/topics/cache/
# The API throttle counts requests here: in memory, per process, by default; CACHE_URL=redis://… shares
# the counts between every web process (Django's Redis cache).
CACHES = {"default": env.cache_url_config(env("CACHE_URL", default="") or "locmemcache://")}

# Requests per API token (or per signed-in staff member) before the API answers 429; empty turns it off.
API_THROTTLE_RATE = env("API_THROTTLE_RATE", default="1200/min")
# Deepest nesting accepted in audience criteria and in profile attributes.
CRITERIA_MAX_DEPTH = env.int("CRITERIA_MAX_DEPTH", default=20)
ATTRIBUTES_MAX_DEPTH = env.int("ATTRIBUTES_MAX_DEPTH", default=10)

# Largest batch accepted by the bulk endpoints, in records per request.
BULK_MAX_RECORDS = env.int("BULK_MAX_RECORDS", default=10_000)
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=20 * 1024 * 1024)

# Region assumed for phone numbers written without a country code.
PHONE_DEFAULT_REGION = env("PHONE_DEFAULT_REGION", default="US")

# Minutes between scheduled refreshes of every rule-based audience (0 turns the schedule off).
AUDIENCE_REFRESH_MINUTES = env.int("AUDIENCE_REFRESH_MINUTES", default=15)
# PostgreSQL memory for each sort or hash of a full refresh, for its own transaction only (the server's default
# of 4 MB spills the anti-joins of a few million members to disk in batches: 10M profiles, README "10M").
REFRESH_WORK_MEM = env.str("REFRESH_WORK_MEM", default="256MB").strip()
if not re.fullmatch(r"[1-9][0-9]*\s*(kB|MB|GB)?", REFRESH_WORK_MEM):
    raise ImproperlyConfigured(
        f"REFRESH_WORK_MEM must be a PostgreSQL memory size such as 256MB or 1GB, not '{REFRESH_WORK_MEM}'."
    )

# https://django-q2.readthedocs.io/en/master/configure.html
# The ORM broker keeps the embedded default to one database; REDIS_URL moves
# the queue to Redis for deployments with several worker machines.
REDIS_URL = env("REDIS_URL", default="")
Q_CLUSTER = {
    "name": "audience-relay",
    "workers": env.int("Q_WORKERS", default=2),
    "timeout": env.int("Q_TIMEOUT", default=600),
    "retry": env.int("Q_RETRY", default=900),
    "max_attempts": 1,
    "queue_limit": 50,
    "catch_up": False,
    "save_limit": 1000,
    "ack_failures": True,
    "sync": env.bool("Q_SYNC", default=False),
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"
    # An idle pusher asks the database for tasks every Q_POLL seconds: the broker's share of a profile change's
    # latency (up to Q_POLL) against ~3 ms of CPU a poll (README "Latency under load").
    Q_CLUSTER["poll"] = env.float("Q_POLL", default=0.2)

# Forwarding. A claimed batch is leased to one worker for OUTBOX_LEASE_SECONDS;
# if the worker dies the batch is claimed again after that.
OUTBOX_LEASE_SECONDS = env.int("OUTBOX_LEASE_SECONDS", default=120)
# Transient failures back off exponentially from RETRY_BASE_SECONDS up to
# RETRY_MAX_SECONDS (with jitter, one draw per batch so a batch's retries go out together), or wait the
# partner's Retry-After when it gives one, and give up after RETRY_WINDOW_HOURS. A drain stops at a batch
# that failed whole, so a partner that is down gets one request per connection every RETRY_MAX_SECONDS.
RETRY_BASE_SECONDS = env.float("RETRY_BASE_SECONDS", default=2)
RETRY_MAX_SECONDS = env.float("RETRY_MAX_SECONDS", default=60)
# A request that got no answer (a timeout, a cut connection) may still be applied by the partner later: the
# identity's next message waits this long after it, so a held add cannot land after a newer remove. It must
# be at least the longest a partner may hold a request past PARTNER_HTTP_TIMEOUT (the sandbox: 60 s).
OUTCOME_SETTLE_SECONDS = env.float("OUTCOME_SETTLE_SECONDS", default=60)
RETRY_WINDOW_HOURS = env.float("RETRY_WINDOW_HOURS", default=72)
# Messages a drain lane claims at once: whole partner requests up to this many (Braze's 75 a request → 450),
# so the database work of a claim is shared by several requests. At least one request is always claimed.
CLAIM_MESSAGES = env.int("CLAIM_MESSAGES", default=500)
# One drain task works at most this long, then queues a successor.
DRAIN_MAX_SECONDS = env.int("DRAIN_MAX_SECONDS", default=300)
# A drain that has run this long hands its worker over when another connection's drain has waited this long
# for one (every worker busy with backlogs): a profile change does not wait for another connection's backfill.
# Above the ORM broker's poll (Q_POLL 0.2 s), within which a free worker would have started it; every second
# of it is a second a change waits behind a backfill (issue 16: 1.0 s gave a p95 of 1.4 s under load).
DRAIN_HANDOVER_SECONDS = env.float("DRAIN_HANDOVER_SECONDS", default=0.5)
# How long a drain waits for one of its output's request slots while other drains hold them all.
SLOT_WAIT_SECONDS = env.float("SLOT_WAIT_SECONDS", default=30)
# Delivered, rejected and failed messages are pruned after this many days.
OUTBOX_KEEP_DAYS = env.int("OUTBOX_KEEP_DAYS", default=7)

# Called (dotted path) with the connection when a drain faults it; the default queues its verification,
# so the connection's page shows the failing check and its hint. Empty turns it off.
CONNECTION_FAULT_HOOK = env("CONNECTION_FAULT_HOOK", default="connections.tasks.verify_after_fault")

# Bearer token required by /metrics. Empty: /metrics answers 403 unless DEBUG is on (a developer's machine).
METRICS_TOKEN = env("METRICS_TOKEN", default="")

# Seconds before a request to a partner is abandoned (connect and read each).
PARTNER_HTTP_TIMEOUT = env.float("PARTNER_HTTP_TIMEOUT", default=15.0)
# Largest partner answer read, in bytes; a bigger one is cut off and treated as unreadable.
PARTNER_MAX_ANSWER_BYTES = env.int("PARTNER_MAX_ANSWER_BYTES", default=5 * 1024 * 1024)
# Webhook URLs and partner base URLs on loopback, private, link-local, multicast or cloud-metadata addresses
# are refused unless this is on: for local development and the demo's partner sandbox on 127.0.0.1.
# It follows DEBUG, so production refuses them unless it is turned on explicitly.
ALLOW_PRIVATE_DESTINATIONS = env.bool("ALLOW_PRIVATE_DESTINATIONS", default=DEBUG)
# Each partner declares the hosts its real API lives on; an output's base URL override elsewhere (the partner
# sandbox, a staging copy) is refused, when saved and for every request, unless this is on, because it would
# carry the output's credentials and member data there. It follows DEBUG, so production sends credentials only
# to the partners' own hosts unless it is turned on explicitly.
ALLOW_BASE_URL_OVERRIDE = env.bool("ALLOW_BASE_URL_OVERRIDE", default=DEBUG)

# The port of the partner sandbox on 127.0.0.1, for `make demo` and `make serve` alike: the demo's outputs point
# at it, so they keep working when `make serve` starts its sandbox there.
SANDBOX_PORT = env.int("SANDBOX_PORT", default=8125)
# Where that sandbox keeps its partners' data between runs (`make demo`, `make serve`, `partner_sandbox`), as a
# real partner keeps what it was sent; a relative path is under the project. Empty: in memory only, as in tests.
_sandbox_state = env.str("SANDBOX_STATE_FILE", default="var/sandbox-state.json")
SANDBOX_STATE_FILE = str(BASE_DIR / _sandbox_state) if _sandbox_state else ""

# Fernet keys for secrets at rest, newest first: the first encrypts, all decrypt,
# so a new key is rolled in by putting it first and running `rotate_secrets`.
# Generate one with: python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"
SECRETS_ENCRYPTION_KEYS = env.list("SECRETS_ENCRYPTION_KEYS", default=[])
if not SECRETS_ENCRYPTION_KEYS and not DEBUG:
    raise ImproperlyConfigured("SECRETS_ENCRYPTION_KEYS must be set when DEBUG is off.")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    # Identity values and secrets are masked in every record at INFO and above (config/log_filters.py).
    "filters": {"mask_identities": {"()": "config.log_filters.MaskIdentities"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["mask_identities"]}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {
        # urllib3 logs request lines (with query strings) at DEBUG: keep it quiet so
        # no partner credential can reach a log by that road.
        "django.db.backends": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
        # Django's and django-q2's own handlers would write records past the masking filter: theirs go
        # to the root's console handler instead.
        "django": {"handlers": [], "propagate": True},
        "django-q": {"handlers": [], "propagate": True},
    },
}

if not DEBUG:
    # https://docs.djangoproject.com/en/5.2/howto/deployment/checklist/
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
