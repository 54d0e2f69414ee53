"""System checks: each id triggered by one wrong setting, none with the defaults."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from django.conf import settings
from django.core.checks import Error, Warning, run_checks
from django.test import override_settings

from django_tasks import checks


def ids(**overrides: Any) -> list[str]:
    with override_settings(**overrides):
        return [m.id or "" for m in checks.check_settings()]


def test_default_settings_produce_no_messages() -> None:
    assert checks.check_settings() == []


def test_the_checks_are_registered_under_their_tag() -> None:
    with override_settings(TASKS_BROKER_URL="nope://"):
        found = run_checks(tags=["django_tasks"])
    assert "django_tasks.E001" in [m.id for m in found]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"TASKS_BROKER_URL": "carrier-pigeon://"}, "django_tasks.E001"),
        ({"TASKS_BROKER_URL": "no-scheme-at-all"}, "django_tasks.E001"),
        ({"TASKS_BROKER_URL": "django://missing"}, "django_tasks.E002"),
        ({"TASKS_RESULT_BACKEND": "django://missing"}, "django_tasks.E002"),
        ({"TASKS_RESULT_BACKEND": "mongodb://x"}, "django_tasks.E003"),
        ({"TASKS_MAX_DELIVERIES": 0}, "django_tasks.E004"),
        ({"TASKS_MAX_DELIVERIES": "3"}, "django_tasks.E004"),
        ({"TASKS_LEASE_SECONDS": 9, "TASKS_HEARTBEAT_SECONDS": 5}, "django_tasks.E005"),
        ({"TASKS_HEARTBEAT_SECONDS": 0}, "django_tasks.E005"),
        ({"TASKS_LEASE_SECONDS": "30"}, "django_tasks.E005"),
        ({"TASKS_ACCEPT_CONTENT": ["json", "pickle"]}, "django_tasks.E006"),
        ({"TASKS_ACCEPT_CONTENT": ["pickle"]}, "django_tasks.E006"),
        ({"TASKS": "redis://localhost"}, "django_tasks.W001"),
    ],
)
def test_each_mistake_has_its_id(overrides: dict[str, Any], expected: str) -> None:
    assert ids(**overrides) == [expected]


def test_errors_are_errors_and_warnings_are_warnings() -> None:
    with override_settings(TASKS_BROKER_URL="x://", TASKS="x"):
        found = {m.id: m for m in checks.check_settings()}
    assert isinstance(found["django_tasks.E001"], Error)
    assert isinstance(found["django_tasks.W001"], Warning)
    assert not isinstance(found["django_tasks.W001"], Error)


def test_messages_name_the_setting_and_the_fix() -> None:
    with override_settings(TASKS_BROKER_URL="carrier-pigeon://"):
        [error] = checks.check_settings()
    assert "TASKS_BROKER_URL='carrier-pigeon://'" in error.msg
    assert error.hint is not None and "django://" in error.hint and "memory://" in error.hint


def test_several_mistakes_are_all_reported() -> None:
    assert ids(TASKS_BROKER_URL="x://", TASKS_RESULT_BACKEND="y://", TASKS_MAX_DELIVERIES=-1,
               TASKS_ACCEPT_CONTENT=["yaml"]) == [
        "django_tasks.E001", "django_tasks.E003", "django_tasks.E004", "django_tasks.E006"]


@pytest.mark.parametrize(
    "overrides",
    [
        {"TASKS_BROKER_URL": "memory://", "TASKS_RESULT_BACKEND": "memory://"},
        {"TASKS_BROKER_URL": "django://default"},
        {"TASKS_RESULT_BACKEND": None},
        {"TASKS_RESULT_BACKEND": ""},
        {"TASKS_LEASE_SECONDS": 10, "TASKS_HEARTBEAT_SECONDS": 5},
        {"TASKS_MAX_DELIVERIES": 1},
        {"TASKS": {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}},
    ],
    ids=["memory", "named-default", "no-results", "empty-results", "lease-2x", "one-delivery",
         "django-tasks-dict"],
)
def test_valid_settings_produce_no_messages(overrides: dict[str, Any]) -> None:
    assert ids(**overrides) == []


# -- W002: the database broker on a SQLite file configured for one writer at a time --------


def sqlite_checks(monkeypatch: pytest.MonkeyPatch, options: dict[str, Any],
                  engine: str = "django.db.backends.sqlite3") -> list[str]:
    fake = SimpleNamespace(DATABASES={"default": {"ENGINE": engine, "OPTIONS": options}})
    monkeypatch.setattr(checks, "settings", fake)
    return [m.id or "" for m in checks._check_sqlite("django://")]


def test_w002_sqlite_with_default_options(monkeypatch: pytest.MonkeyPatch) -> None:
    assert sqlite_checks(monkeypatch, {}) == ["django_tasks.W002"]


def test_w002_sqlite_with_a_short_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    options = {"transaction_mode": "IMMEDIATE", "timeout": 5}
    assert sqlite_checks(monkeypatch, options) == ["django_tasks.W002"]


def test_no_w002_when_sqlite_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    options = {"transaction_mode": "immediate", "timeout": 30}
    assert sqlite_checks(monkeypatch, options) == []


def test_no_w002_on_other_databases(monkeypatch: pytest.MonkeyPatch) -> None:
    assert sqlite_checks(monkeypatch, {}, engine="django.db.backends.postgresql") == []


def test_no_w002_with_another_broker() -> None:
    assert checks._check_sqlite("memory://") == []


def test_the_test_project_database_passes() -> None:
    assert checks._check_sqlite(settings.TASKS_BROKER_URL) == []


@pytest.mark.parametrize("url", ["filesystem:///tmp/tasks", "sqs://", "kombu+sqs://",
                                 "kombu+redis://127.0.0.1:6379/0"])
def test_kombu_transports_are_brokers(settings: Any, url: str) -> None:
    settings.TASKS_BROKER_URL = url
    assert [m.id for m in checks.check_settings() if m.id == "django_tasks.E001"] == []


def test_an_unknown_broker_scheme_hints_at_kombu_transports(settings: Any) -> None:
    settings.TASKS_BROKER_URL = "nats://127.0.0.1:4222"
    [found] = [m for m in checks.check_settings() if m.id == "django_tasks.E001"]
    assert "kombu+<transport>://" in str(found.hint) and "sqs://" in str(found.hint)


@pytest.mark.parametrize(("setting", "check_id"), [("TASKS_BROKER_URL", "django_tasks.E001"),
                                                   ("TASKS_RESULT_BACKEND", "django_tasks.E003")])
def test_a_password_in_a_url_is_masked_in_the_message(settings: Any, setting: str,
                                                      check_id: str) -> None:
    setattr(settings, setting, "nats://user:s3cr%40t@cache.internal:6380/0")  # unsupported
    [found] = [m for m in checks.check_settings() if m.id == check_id]
    assert "s3cr" not in found.msg and "user:**@cache.internal:6380" in found.msg


def test_a_bad_beat_schedule_fails_the_checks_naming_the_entry(settings: Any) -> None:
    settings.TASKS_BEAT_SCHEDULE = {"nightly": {"task": "app.tasks.report", "schedule": "1h"}}
    [found] = [m for m in checks.check_settings() if m.id == "django_tasks.E010"]
    assert "TASKS_BEAT_SCHEDULE['nightly']" in found.msg and "is not a schedule" in found.msg


@pytest.mark.parametrize("tick", [0, -1, 61, "1"])
def test_a_bad_beat_tick_fails_the_checks(settings: Any, tick: object) -> None:
    settings.TASKS_BEAT_TICK_SECONDS = tick
    assert "django_tasks.E011" in [m.id for m in checks.check_settings()]


@pytest.mark.parametrize(
    ("setting", "value", "says"),
    [
        ("TASKS_RESULT_EXPIRES", "1 day", "must be a timedelta or a number of seconds"),
        ("TASKS_WORKER_CONCURRENCY", 0, "a whole number of at least 1, or None"),
        ("TASKS_WORKER_PREFETCH", 0, "a whole number of at least 1"),
        ("TASKS_WORKER_SHUTDOWN_TIMEOUT", -1, "0 or more"),
        ("TASKS_ALWAYS_EAGER", "yes", "True or False"),
        ("TASKS_POLL_INTERVAL", 0, "more than 0"),
        ("TASKS_DEFAULT_QUEUE", "", "a queue name"),
        ("TASKS_PRUNE_BATCH_SIZE", 1.5, "a whole number"),
        ("TASKS_BROKER_TRANSPORT_OPTIONS", [("region", "eu-west-1")], "a dict of kombu"),
    ],
)
def test_every_setting_is_checked_for_type_and_range(settings: Any, setting: str,
                                                     value: object, says: str) -> None:
    setattr(settings, setting, value)
    found = [m for m in checks.check_settings() if m.id == "django_tasks.E012"]
    assert len(found) == 1 and found[0].msg.startswith(f"{setting} = {value!r} must be")
    assert says in found[0].msg


def test_the_defaults_pass_every_type_check() -> None:
    assert [m for m in checks.check_settings() if m.id == "django_tasks.E012"] == []


def test_a_celery_setting_names_its_counterpart(settings: Any) -> None:
    settings.CELERY_BROKER_URL = "redis://localhost"
    [found] = [m for m in checks.check_settings() if m.id == "django_tasks.W003"]
    assert "CELERY_BROKER_URL is set, but django_tasks reads TASKS_BROKER_URL" in found.msg


def test_a_misspelt_setting_gets_the_closest_name(settings: Any) -> None:
    settings.TASKS_BROKER_ULR = "django://"
    [found] = [m for m in checks.check_settings() if m.id == "django_tasks.W004"]
    assert "TASKS_BROKER_ULR is not a django_tasks setting" in found.msg
    assert found.hint == "Did you mean TASKS_BROKER_URL?"


def test_a_broker_whose_driver_is_missing_says_what_to_install(
        settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # As if redis-py were not installed: the scheme's driver is a package that is not there.
    monkeypatch.setitem(checks.BROKER_DRIVERS, "redis", "no_such_redis_driver")
    monkeypatch.setitem(checks.DRIVER_EXTRAS, "no_such_redis_driver", "redis")
    settings.TASKS_BROKER_URL = "redis://:pw@127.0.0.1:6379/0"
    [found] = [m for m in checks.check_settings() if m.id == "django_tasks.E014"]
    assert "needs the no_such_redis_driver package" in found.msg and ":pw@" not in found.msg
    assert found.hint == "pip install 'django-taskworker[redis]'."
    settings.TASKS_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672//"
    assert not [m for m in checks.check_settings() if m.id == "django_tasks.E014"]
