"""TASKS_TASK_ROUTES, in the shapes of Celery's task_routes."""

from __future__ import annotations

import re
from typing import Any

import pytest

from django_tasks import send_task, shared_task
from django_tasks.checks import check_settings
from django_tasks.conf import get_broker
from django_tasks.exceptions import ConfigurationError
from django_tasks.message import Message

pytestmark = pytest.mark.usefixtures("memory_tasks")


@shared_task(name="billing.tasks.charge")
def charge(amount: int) -> int:
    return amount


@shared_task(name="billing.tasks.refund")
def refund(amount: int) -> int:
    return amount


@shared_task(name="mail.tasks.send_welcome")
def send_welcome(user: int) -> int:
    return user


@shared_task(name="mail.tasks.pinned", queue="pinned")
def pinned() -> None:
    return None


def queued() -> list[Message]:
    broker = get_broker()
    return [Message.decode(d.body) for d in broker.fetch(list(broker.depths()), "t", 100, 30)]


def where(result: Any) -> tuple[str, int]:
    [message] = [m for m in queued() if m.id == result.id]
    return message.queue, message.priority


def by_amount(name: str, args: tuple[Any, ...], kwargs: dict[str, Any], options: dict[str, Any],
              task: Any = None, **kw: Any) -> dict[str, Any] | None:
    if name == "billing.tasks.charge" and args and args[0] >= 1000:
        return {"queue": "big-money", "priority": 9}
    return None


def test_no_routes_means_the_default_queue(settings: Any) -> None:
    assert where(charge.delay(1)) == ("default", 0)


def test_names_globs_and_expressions(settings: Any) -> None:
    settings.TASKS_TASK_ROUTES = {
        "billing.tasks.refund": {"queue": "refunds"},
        "billing.*": {"queue": "billing", "priority": 3},
        re.compile(r"mail\.tasks\.send_.*"): "mail",
    }
    assert where(refund.delay(1)) == ("refunds", 0)  # the exact name before any pattern
    assert where(charge.delay(1)) == ("billing", 3)
    assert where(send_welcome.delay(1)) == ("mail", 0)


def test_the_first_pattern_that_matches_wins(settings: Any) -> None:
    settings.TASKS_TASK_ROUTES = {"billing.tasks.*": "first", "billing.*": "second"}
    assert where(charge.delay(1)) == ("first", 0)


def test_a_list_of_routers_is_tried_in_order(settings: Any) -> None:
    settings.TASKS_TASK_ROUTES = [by_amount, {"billing.*": "billing"}]
    assert where(charge.delay(5000)) == ("big-money", 9)
    assert where(charge.delay(5)) == ("billing", 0)  # the function said None


def test_a_router_by_dotted_path(settings: Any) -> None:
    settings.TASKS_TASK_ROUTES = [f"{__name__}.by_amount"]
    assert where(charge.delay(5000)) == ("big-money", 9)


def test_what_the_call_or_the_task_says_wins(settings: Any) -> None:
    settings.TASKS_TASK_ROUTES = {"*": {"queue": "routed", "priority": 4}}
    assert where(charge.apply_async((1,), queue="explicit")) == ("explicit", 4)
    assert where(charge.apply_async((1,), priority=1)) == ("routed", 1)
    assert where(pinned.delay()) == ("pinned", 4)


def test_send_task_is_routed_too(settings: Any) -> None:
    settings.TASKS_TASK_ROUTES = {"billing.*": "billing"}
    assert where(send_task("billing.tasks.unknown_here", (1,))) == ("billing", 0)


@pytest.mark.parametrize(("routes", "message"), [
    ({"billing.*": {"queue": "billing", "prioirty": 5}}, "has 'prioirty'"),
    ({"billing.*": {"priority": 12}}, "priority 12"),
    ({"billing.*": 5}, "a route is a queue name or a dict"),
    ({5: "x"}, "has the key 5"),
    (["no.such.module.router"], "cannot be imported"),
    ([42], "a router is a dict of routes"),
], ids=["misspelt key", "priority out of range", "not a route", "bad key", "bad path",
        "not a router"])
def test_a_bad_route_is_refused_at_the_checks_and_at_the_call(settings: Any, routes: object,
                                                              message: str) -> None:
    settings.TASKS_TASK_ROUTES = routes
    [found] = [m for m in check_settings() if m.id == "django_tasks.E013"]
    assert message in found.msg
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        charge.delay(1)


def test_a_router_that_answers_badly_is_named(settings: Any) -> None:
    settings.TASKS_TASK_ROUTES = [lambda *a, **k: 7]
    with pytest.raises(ConfigurationError, match=r"the route for billing\.tasks\.charge is 7"):
        charge.delay(1)


def test_celery_task_routes_points_to_ours(settings: Any) -> None:
    settings.CELERY_TASK_ROUTES = {"billing.*": "billing"}
    [found] = [m for m in check_settings() if m.id == "django_tasks.W003"]
    assert "TASKS_TASK_ROUTES" in found.msg
