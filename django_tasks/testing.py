"""Test helpers: run queued tasks on demand, through the worker's own code, on a clock the
test moves.

Unlike eager mode, nothing runs at ``delay()``: the message is written by the database broker
in the test's transaction, exactly as in production (a rolled-back ``atomic()`` leaves nothing),
and ``run_pending()`` then claims, decodes, checks and runs it, records the outcome and acks it
with the code a worker uses: signals, retries, ``expires``, time limits and rejections behave
as they do there. Countdowns, etas and retry delays follow a fake clock that only moves when
the test says so::

    def test_welcome_mail_is_retried(task_queue, mailoutbox):
        signup(email="ada@example.com")
        task_queue.assert_enqueued(send_welcome_email, kwargs={"address": "ada@example.com"})
        task_queue.run_pending()           # the first try fails and schedules a retry in 60 s
        task_queue.clock.advance(60)
        task_queue.run_pending()           # the retry succeeds
        assert len(mailoutbox) == 1

With pytest-django the ``task_queue`` fixture is registered automatically (it needs the
database); with ``TestCase``, use ``with TaskQueue() as task_queue:``.
"""

from __future__ import annotations

import datetime as dt
import threading
from contextlib import ExitStack
from typing import Any

from . import clock
from .message import Message
from .result import AsyncResult

OWNER = "django_tasks.testing"


class FakeClock:
    """A frozen "now" for django_tasks that moves only with :meth:`advance`."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self.current = start or clock.now()
        self._real = clock.now

    def now(self) -> dt.datetime:
        return self.current

    def advance(self, seconds: float = 0, **delta: float) -> dt.datetime:
        """Move on by ``seconds`` (and/or ``timedelta`` keywords: ``minutes=5``)."""
        self.current += dt.timedelta(seconds=seconds, **delta)
        return self.current

    def install(self) -> None:
        clock.now = self.now

    def uninstall(self) -> None:
        clock.now = self._real


def _named(task: Any) -> str:
    return task if isinstance(task, str) else str(task.name)


class TaskQueue:
    """The tasks a test queued, and the means to run them. Use as a context manager."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self.clock = FakeClock(start)
        self._stack = ExitStack()

    def __enter__(self) -> TaskQueue:
        from django.test import override_settings

        from .conf import reset_cache

        self._stack.enter_context(override_settings(
            TASKS_BROKER_URL="django://", TASKS_RESULT_BACKEND="django://",
            TASKS_ALWAYS_EAGER=False))
        self._stack.callback(reset_cache)
        reset_cache()
        self.clock.install()
        self._stack.callback(self.clock.uninstall)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    # -- looking ---------------------------------------------------------------------------

    def queued(self, task: Any = None) -> list[Message]:
        """Messages waiting in the queue (due or not), oldest first; of ``task`` if given."""
        from .models import QueuedMessage

        rows = QueuedMessage.objects.order_by("id").values_list("body", flat=True)
        messages = [Message.decode(body) for body in rows]
        return [m for m in messages if task is None or m.task == _named(task)]

    def due(self) -> list[Message]:
        """Queued messages whose time has come on the fake clock."""
        from .models import QueuedMessage

        rows = (QueuedMessage.objects.filter(visible_at__lte=self.clock.now())
                .order_by("-priority", "visible_at", "id").values_list("body", flat=True))
        return [Message.decode(body) for body in rows]

    def assert_enqueued(self, task: Any, args: tuple[Any, ...] | list[Any] | None = None,
                        kwargs: dict[str, Any] | None = None, *, count: int | None = None,
                        **options: Any) -> list[Message]:
        """Assert ``task`` was queued (with these ``args``/``kwargs``/``queue=``/… where
        given, compared after the JSON round trip); return the matching messages."""
        name = _named(task)
        wanted_args = None if args is None else tuple(args)
        matching = [
            m for m in self.queued(name)
            if (wanted_args is None or m.args == wanted_args)
            and (kwargs is None or m.kwargs == kwargs)
            and all(getattr(m, key) == value for key, value in options.items())
        ]
        expected = f"{count} message(s)" if count is not None else "a message"
        if (count is None and not matching) or (count is not None and len(matching) != count):
            listing = "\n".join(f"  {m.task} args={list(m.args)!r} kwargs={m.kwargs!r} "
                                f"queue={m.queue!r}" for m in self.queued()) or "  (nothing)"
            raise AssertionError(
                f"Expected {expected} of {name} with args={args!r} kwargs={kwargs!r} "
                f"{options or ''}, found {len(matching)}. Queued:\n{listing}")
        return matching

    def assert_not_enqueued(self, task: Any) -> None:
        found = self.queued(task)
        if found:
            raise AssertionError(f"{_named(task)} was queued {len(found)} time(s): "
                                 f"{[list(m.args) for m in found]!r}")

    # -- running ---------------------------------------------------------------------------

    def run_pending(self, limit: int | None = None) -> list[AsyncResult]:
        """Run due messages one at a time, until none is due (or ``limit`` ran); retries
        that come due meanwhile run too. Returns the results of what ran, in order."""
        from .conf import get_broker
        from .worker.consumer import Consumer

        broker = get_broker()
        consumer = Consumer(queues=["-"], owner=OWNER, hostname="testing", prefetch=1,
                            lease=24 * 3600, stop=threading.Event())
        ran: list[AsyncResult] = []
        while limit is None or len(ran) < limit:
            queues = sorted(broker.depths())
            deliveries = broker.fetch(queues, OWNER, 1, 24 * 3600) if queues else []
            if not deliveries:
                break
            consumer.process(deliveries)
            task_id = deliveries[0].task_id or deliveries[0].message().id
            ran.append(AsyncResult(task_id))
        return ran

    def clear(self) -> int:
        """Drop every queued message; return how many there were."""
        from .models import QueuedMessage

        deleted, _ = QueuedMessage.objects.all().delete()
        return int(deleted)
