"""Production settings (DEBUG off): Django's deployment checklist passes and the risky switches are off.

Run in a subprocess with a production environment, as `manage.py` would be on a server; `.ci/run`
runs the same `check --deploy` step.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]


def production_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "ALLOW_", "SECURE_"))}
    env.update(
        DEBUG="false",
        SECRET_KEY="k" * 10 + "-production-like-secret-key-with-enough-entropy-9f8e7d6c5b4a",
        SECRETS_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        ALLOWED_HOSTS="relay.example.com",
        DATABASE_URL="sqlite:////tmp/audience-relay-deploy-check.sqlite3",
    )
    env.update(extra)
    return env


def manage(*args, env):
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_check_deploy_prints_no_warnings_with_production_settings():
    proc = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env())

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "System check identified no issues (0 silenced)." in proc.stdout


def test_production_refuses_private_destinations_and_sends_cookies_over_https_only():
    code = (
        "import json; from django.conf import settings as s; print(json.dumps({k: getattr(s, k) for k in "
        "['DEBUG', 'ALLOW_PRIVATE_DESTINATIONS', 'SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', "
        "'SECURE_SSL_REDIRECT', 'SECURE_HSTS_SECONDS']}))"
    )
    proc = manage("shell", "-c", code, env=production_env())

    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {
        "DEBUG": False,
        "ALLOW_PRIVATE_DESTINATIONS": False,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 31536000,
    }


def test_production_will_not_start_without_its_secrets():
    env = production_env()
    del env["SECRETS_ENCRYPTION_KEYS"]
    proc = manage("check", env=env)

    assert proc.returncode != 0
    assert "SECRETS_ENCRYPTION_KEYS must be set when DEBUG is off." in proc.stderr


def test_a_work_mem_that_postgresql_would_refuse_stops_the_start_with_the_setting_named():
    proc = manage("check", env=production_env(REFRESH_WORK_MEM="lots"))

    assert proc.returncode != 0
    assert "REFRESH_WORK_MEM must be a PostgreSQL memory size such as 256MB or 1GB, not 'lots'." in proc.stderr
