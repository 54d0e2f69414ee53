"""Celery's task and call options that have no meaning here: accepted, with a warning.

Code moved from Celery keeps importing and running: an option Celery documents that this
project does not implement is accepted, and a warning saying why it has no effect is logged
once per option name and process. An option Celery does not have is still a ``TypeError``
(a typo should fail early). See docs/reference/tasks.md for the full table.
"""

from __future__ import annotations

import difflib
import logging
import threading
from collections.abc import Iterable
from typing import Any

logger = logging.getLogger("django_tasks")

#: ``@shared_task(...)`` options of Celery's that have no effect here, and why.
TASK_OPTIONS_WITHOUT_EFFECT: dict[str, str] = {
    "store_errors_even_if_ignored": "failures and retries are always stored, even with "
                                    "ignore_result=True",
    "acks_on_failure_or_timeout": "a task that fails or passes its time limit is always "
                                  "acked, after its FAILURE is stored",
    "reject_on_worker_lost": "a task whose worker died is always delivered again, up to "
                             "TASKS_MAX_DELIVERIES runs, then recorded as FAILURE",
    "compression": "messages are JSON and are not compressed",
    "backend": "results go to the store TASKS_RESULT_BACKEND names, for every task",
    "send_events": "there are no Celery events; the result rows and the admin show each task",
    "trail": "children are always found through their parent_id (AsyncResult.children)",
    "abstract": "a base class is given with base=, never registered itself",
    "resultrepr_maxsize": "results are stored as JSON, not as a repr",
    "store_eager_result": "eager results are stored like any other when a result store is set",
    "Request": "the worker's request class cannot be replaced",
    "Strategy": "the worker's consuming strategy cannot be replaced",
    "lazy": "tasks are always registered at once",
    "pydantic": "arguments are not converted with pydantic; they are checked against the "
                "signature",
    "pydantic_strict": "arguments are not converted with pydantic",
    "pydantic_context": "arguments are not converted with pydantic",
    "pydantic_dump_kwargs": "results are not converted with pydantic",
    "ignore_errors": "there are no Celery result backends whose errors could be ignored",
}

#: ``apply_async(...)`` options of Celery's that have no effect here, and why.
CALL_OPTIONS_WITHOUT_EFFECT: dict[str, str] = {
    "retry": "publishing is not retried by the caller: on the database broker the message "
             "is a row of your transaction, and on Redis and RabbitMQ a message queued inside "
             "a transaction waits in the outbox until it is published",
    "retry_policy": "publishing is not retried by the caller (see retry)",
    "exchange": "messages are routed by queue name; use queue= (or TASKS_TASK_ROUTES)",
    "routing_key": "messages are routed by queue name; use queue= (or TASKS_TASK_ROUTES)",
    "serializer": "messages are always JSON",
    "compression": "messages are JSON and are not compressed",
    "shadow": "logs and the admin always show the task's own name",
    "add_to_parent": "children are always found through their parent_id "
                     "(AsyncResult.children)",
    "publisher": "the broker connection is managed for you",
    "producer": "the broker connection is managed for you",
    "connection": "the broker connection is managed for you",
    "reply_to": "results go to the result store, not to a reply queue",
    "correlation_id": "the correlation id is always the task id",
    "stamped_headers": "stamping is not supported; use headers=",
    "replaced_task_nesting": "Task.replace() is not supported",
    "group_index": "a group's order is not recorded",
    "mandatory": "the broker always takes the message or raises",
    "immediate": "the broker always takes the message or raises",
}

_warned: set[str] = set()
_lock = threading.Lock()


def warn_once(kind: str, name: str, why: str) -> None:
    """Log that option ``name`` has no effect, once per name and process."""
    key = f"{kind}:{name}"
    with _lock:
        if key in _warned:
            return
        _warned.add(key)
    logger.warning("The %s option %s= is accepted for Celery compatibility but has no effect: "
                   "%s.", kind, name, why)


def _unknown(name: str, known: Iterable[str], kind: str) -> TypeError:
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f" Did you mean {close[0]}=?" if close else ""
    return TypeError(f"{name}= is not a {kind} option of django_tasks or of Celery.{hint}")


def task_options(options: dict[str, Any], implemented: Iterable[str]) -> dict[str, Any]:
    """Sort ``@shared_task`` options Task() does not take itself: Celery's setting names
    (``task_time_limit``) become the option (``time_limit``), with a warning; options
    without effect are dropped with a warning; others raise ``TypeError``. Returns the
    options Task() takes."""
    implemented = set(implemented)
    taken: dict[str, Any] = {}
    for name, value in options.items():
        if name.startswith("task_") and name[5:] in implemented:
            logger.warning("%s= is the name of Celery's setting; as a task option it is "
                           "%s=, and is taken as that.", name, name[5:])
            taken[name[5:]] = value
        elif name.startswith("task_") and name[5:] in TASK_OPTIONS_WITHOUT_EFFECT:
            warn_once("task", name, TASK_OPTIONS_WITHOUT_EFFECT[name[5:]])
        elif name in TASK_OPTIONS_WITHOUT_EFFECT:
            warn_once("task", name, TASK_OPTIONS_WITHOUT_EFFECT[name])
        else:
            raise _unknown(name, [*implemented, *TASK_OPTIONS_WITHOUT_EFFECT], "task")
    return taken


def call_options(options: dict[str, Any]) -> None:
    """Check ``apply_async`` options the message does not take: warn about those without
    effect; refuse unknown names."""
    for name, value in options.items():
        if name == "serializer" and value in (None, "json"):
            continue
        if name == "serializer":
            raise TypeError(f"serializer={value!r}: only 'json' is supported (pickle is never "
                            "accepted, so messages cannot run code).")
        if name not in CALL_OPTIONS_WITHOUT_EFFECT:
            raise _unknown(name, CALL_OPTIONS_WITHOUT_EFFECT, "call")
        warn_once("call", name, CALL_OPTIONS_WITHOUT_EFFECT[name])
