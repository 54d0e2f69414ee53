"""``TASKS_TASK_ROUTES``: which queue (and priority) a task goes to, in the shape of Celery's
``task_routes``, so that a project moving from Celery keeps its routing.

The setting is one router or a list of routers, tried in order until one answers:

* a dict from task names to routes: a name, a glob (``"billing.*"``, ``"*.send_*"``) or a
  compiled regular expression (``re.compile(r"reports\\..*")``) as the key, and a route as
  the value: ``{"queue": "billing", "priority": 5}``, or just the queue name;
* a function ``router(name, args, kwargs, options, task=None, **kw)`` that returns a route or
  None (not mine), or its dotted path as a string.

Exact names are looked up first, then the patterns in the order given. A route decides only
what the call left open: ``apply_async(queue=...)`` and a ``queue`` given to ``@shared_task``
win over it, as in Celery, and a route without a queue keeps the default queue.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.utils.module_loading import import_string

from .exceptions import ConfigurationError

Router = Callable[..., Any]
#: Route keys a route may set; Celery's exchange and routing keys have no meaning here.
ROUTE_KEYS = frozenset({"queue", "priority"})
IGNORED_KEYS = frozenset({"exchange", "exchange_type", "routing_key", "delivery_mode"})


@dataclass(frozen=True, slots=True)
class Route:
    queue: str | None = None
    priority: int | None = None


def route_for(name: str, args: Sequence[Any], kwargs: Mapping[str, Any],
              options: Mapping[str, Any], setting: object) -> Route:
    """The route ``setting`` (the value of ``TASKS_TASK_ROUTES``) gives task ``name``."""
    for router in routers(setting):
        answer = router(name, tuple(args), dict(kwargs), dict(options), task=None)
        if answer:
            return to_route(answer, f"the route for {name}")
    return Route()


def routers(setting: object) -> list[Router]:
    """``setting`` as a list of router functions; ConfigurationError naming what is wrong."""
    if setting is None:
        return []
    items = list(setting) if isinstance(setting, list | tuple) else [setting]
    return [_router(item, index) for index, item in enumerate(items)]


def to_route(answer: object, what: str) -> Route:
    if isinstance(answer, Route):
        return answer
    if isinstance(answer, str):
        return Route(queue=answer)
    if not isinstance(answer, Mapping):
        raise ConfigurationError(
            f"TASKS_TASK_ROUTES: {what} is {answer!r}; a route is a queue name or a dict "
            "such as {'queue': 'billing', 'priority': 5}.")
    unknown = set(answer) - ROUTE_KEYS - IGNORED_KEYS
    if unknown:
        raise ConfigurationError(
            f"TASKS_TASK_ROUTES: {what} has {', '.join(sorted(map(repr, unknown)))}; a route "
            "may set 'queue' and 'priority'.")
    queue, priority = answer.get("queue"), answer.get("priority")
    if queue is not None and not (isinstance(queue, str) and queue):
        raise ConfigurationError(f"TASKS_TASK_ROUTES: {what} has queue {queue!r}; use a "
                                 "queue name.")
    if priority is not None and not (isinstance(priority, int) and not isinstance(priority, bool)
                                     and 0 <= priority <= 9):
        raise ConfigurationError(f"TASKS_TASK_ROUTES: {what} has priority {priority!r}; use a "
                                 "whole number from 0 to 9.")
    return Route(queue=queue, priority=priority)


def _router(item: object, index: int) -> Router:
    if isinstance(item, str):
        try:
            item = import_string(item)
        except ImportError as exc:
            raise ConfigurationError(
                f"TASKS_TASK_ROUTES[{index}] = {item!r} cannot be imported ({exc}); use the "
                "dotted path of a router function, or a dict of routes.") from None
    if isinstance(item, Mapping):
        return _table(item, index)
    if callable(item):
        return item
    raise ConfigurationError(
        f"TASKS_TASK_ROUTES[{index}] is {item!r}; a router is a dict of routes, a function, "
        "or a function's dotted path.")


def _table(table: Mapping[Any, Any], index: int) -> Router:
    exact: dict[str, Route] = {}
    patterns: list[tuple[re.Pattern[str], Route]] = []
    for key, value in table.items():
        given = to_route(value, f"the route of {key!r}")
        if isinstance(key, re.Pattern):
            patterns.append((key, given))
        elif isinstance(key, str) and any(ch in key for ch in "*?["):
            patterns.append((re.compile(fnmatch.translate(key)), given))
        elif isinstance(key, str):
            exact[key] = given
        else:
            raise ConfigurationError(
                f"TASKS_TASK_ROUTES[{index}] has the key {key!r}; use a task name, a glob such "
                "as 'billing.*', or re.compile(...).")

    def lookup(name: str, *_: Any, **__: Any) -> Route | None:
        if name in exact:
            return exact[name]
        for pattern, found in patterns:
            if pattern.match(name):
                return found
        return None

    return lookup
