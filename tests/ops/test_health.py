"""`/health/`: what a load balancer asks — can this process reach its database and its broker?"""

import pytest
from django.db import OperationalError
from django.test import Client

pytestmark = pytest.mark.django_db


def test_it_answers_200_when_the_database_and_the_orm_broker_answer(settings):
    settings.REDIS_URL = ""

    response = Client().get("/health/")

    assert response.status_code == 200
    assert response.json() == {"database": "ok", "broker": "ok"}
    assert "no-cache" in response["Cache-Control"]


def test_it_needs_no_login_and_no_token(settings):
    settings.METRICS_TOKEN = "s3cret"

    assert Client().get("/health/").status_code == 200


def test_it_answers_503_naming_the_database_when_it_cannot_reach_it(monkeypatch, settings):
    from django.db.backends.utils import CursorWrapper

    settings.REDIS_URL = ""

    def refuse(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(CursorWrapper, "execute", refuse)
    response = Client().get("/health/")

    assert response.status_code == 503
    body = response.json()
    assert body["database"] == "unreachable (OperationalError)"
    assert body["broker"].startswith("unreachable (ORM broker table")


def test_it_answers_503_naming_the_broker_when_redis_does_not_answer(settings):
    settings.REDIS_URL = "redis://:hunter2@127.0.0.1:1/0"  # nothing listens on port 1

    response = Client().get("/health/")

    assert response.status_code == 503
    assert response.json() == {"database": "ok", "broker": "unreachable (Redis: ConnectionError)"}
    assert b"hunter2" not in response.content


def test_it_pings_redis_when_the_broker_is_redis(settings):
    import redis

    url = "redis://127.0.0.1:6379/15"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    settings.REDIS_URL = url

    response = Client().get("/health/")

    assert (response.status_code, response.json()) == (200, {"database": "ok", "broker": "ok"})


def test_it_refuses_other_methods():
    assert Client().post("/health/").status_code == 405
