"""Example tasks: arithmetic, an e-mail, a slow one, one that fails, and a few the tests use."""

import os
import time
import uuid

from django.core.mail import send_mail

from django_tasks import shared_task
from django_tasks.utils.log import get_task_logger

logger = get_task_logger(__name__)


@shared_task
def add(x: int, y: int) -> int:
    return x + y


@shared_task
def tsum(values: list[int]) -> int:
    """The sum of a list: a chord's callback gets its members' results in one."""
    return sum(values)


@shared_task
def multiply(x: int, y: int) -> int:
    return x * y


@shared_task
def noop() -> None:
    return None


@shared_task(queue="mail")
def send_welcome_email(address: str, name: str) -> int:
    return send_mail(
        subject=f"Welcome, {name}",
        message=f"Hello {name}, your account is ready.",
        from_email=None,
        recipient_list=[address],
    )


@shared_task(bind=True, track_started=True)
def slow(self, seconds: float = 5.0, marker: str = "") -> str:  # type: ignore[no-untyped-def]
    """Sleep; with ``marker`` set, append one line per start to that file (for tests)."""
    if marker:
        with open(marker, "a") as fh:
            fh.write(f"{self.request.id} {self.request.hostname}\n")
    time.sleep(seconds)
    return f"slept {seconds}s"


@shared_task
def fail(message: str = "this task always fails") -> None:
    raise ValueError(message)


@shared_task(bind=True, max_retries=2, default_retry_delay=0.1)
def flaky(self, fail_times: int) -> int:  # type: ignore[no-untyped-def]
    if self.request.retries < fail_times:
        raise self.retry(exc=RuntimeError(f"attempt {self.request.retries} failed"))
    return self.request.retries


@shared_task
def count_users() -> int:
    from django.contrib.auth.models import User

    return User.objects.count()


@shared_task
def die() -> None:
    """Kill the process running it, as an out-of-memory kill would."""
    import os
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


@shared_task(time_limit=60, soft_time_limit=50)
def crunch(seconds: float = 5.0) -> int:
    """Busy pure-Python work for ``seconds``, with time limits (lower them per call)."""
    end, rounds = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        rounds += 1
    return rounds


@shared_task(soft_time_limit=50)
def tidy(seconds: float = 5.0) -> str:
    """Sleep; at the soft time limit, stop early and say so, as a task that cleans up would."""
    from django_tasks.exceptions import SoftTimeLimitExceeded

    try:
        time.sleep(seconds)
    except SoftTimeLimitExceeded:
        return "stopped at the soft time limit"
    return f"slept {seconds}s"


_PROCESS = uuid.uuid4().hex[:8]  # new in every interpreter, shared by forked children
_HOARD: list[bytearray] = []


@shared_task
def whoami() -> str:
    """``<pid>-<token>``: which process ran the task, and which interpreter it came from."""
    return f"{os.getpid()}-{_PROCESS}"


@shared_task
def hoard(mib: int = 10) -> str:
    """Keep ``mib`` MiB more for the life of the process, as a leaking library would."""
    _HOARD.append(bytearray(b"x" * (mib << 20)))
    return whoami()


@shared_task
async def nap(seconds: float = 1.0) -> str:
    """An ``async def`` task: awaits instead of blocking its worker thread."""
    import asyncio

    await asyncio.sleep(seconds)
    return f"napped {seconds}s"


# -- tasks of the fault suite (tests/faults) --
# Each appends one short line per execution start ("S") and end ("E") to the journal file
# named by its first argument:
#     <S|E> <task id> <pid> <thread id> <hostname> <attempt> <time.time()> [<note>]
# where the attempt is the delivery count (``self.request.delivery_info["attempts"]``). The
# suite reads these files to count executions and to see where and when each one ran.


def _journal(path: str, mark: str, task_id: str | None, hostname: str | None, attempt: int,
             note: str = "") -> None:
    import threading

    line = (f"{mark} {task_id} {os.getpid()} {threading.get_ident()} {hostname} {attempt} "
            f"{time.time():.6f} {note}").rstrip()
    with open(path, "a") as fh:  # one short write per line: appends do not interleave
        fh.write(line + "\n")


def _attempt(delivery_info: dict[str, object]) -> int:
    value = delivery_info.get("attempts", 0)
    return value if isinstance(value, int) else 0


@shared_task(bind=True)
def record(self, journal: str, seconds: float = 0.0, payload: object = None) -> int:  # type: ignore[no-untyped-def]
    """An innocent task: journal its start, sleep ``seconds``, journal its end. ``payload``
    is ignored (the suite's bad messages carry odd values in it)."""
    request = self.request
    attempt = _attempt(request.delivery_info)
    _journal(journal, "S", request.id, request.hostname, attempt)
    if seconds:
        time.sleep(seconds)
    _journal(journal, "E", request.id, request.hostname, attempt)
    return attempt


@shared_task
def die_after_commit(marker: str, journal: str) -> None:
    """The first time (no ``marker`` file): queue ``record(journal)`` in a transaction on a
    broker outside the database, and die (kill -9) in the commit hook, after it claimed the
    outbox row and before the broker took the message. After that, nothing."""
    import signal

    from django.db import transaction

    from django_tasks.conf import get_broker

    if os.path.exists(marker):
        return
    open(marker, "w").close()
    get_broker().publish_once = lambda keyed: os.kill(os.getpid(), signal.SIGKILL)  # type: ignore[method-assign]
    with transaction.atomic():
        record.delay(journal)


@shared_task(bind=True)
def poison(self, journal: str, how: str) -> None:  # type: ignore[no-untyped-def]
    """Journal the start, then end as ``how`` says: ``os._exit`` (the process dies at once),
    ``sys.exit`` (raises SystemExit) or ``KeyboardInterrupt``."""
    request = self.request
    _journal(journal, "S", request.id, request.hostname, _attempt(request.delivery_info), how)
    if how == "os._exit":
        os._exit(1)
    if how == "sys.exit":
        raise SystemExit(1)
    if how == "KeyboardInterrupt":
        raise KeyboardInterrupt
    raise ValueError(f"unknown poison {how!r}")


@shared_task(bind=True)
def fail_first(self, journal: str, seconds: float = 4.0) -> int:  # type: ignore[no-untyped-def]
    """Sleep ``seconds``; then fail on the first delivery and succeed on any later one."""
    request = self.request
    attempt = _attempt(request.delivery_info)
    _journal(journal, "S", request.id, request.hostname, attempt)
    time.sleep(seconds)
    if attempt <= 1:
        _journal(journal, "E", request.id, request.hostname, attempt, "fail")
        raise RuntimeError(f"attempt {attempt} of fail_first fails, as it was told to")
    _journal(journal, "E", request.id, request.hostname, attempt)
    return attempt


@shared_task
def echo_types(value: dict[str, object]) -> dict[str, object]:
    """Return ``value`` with the name of each item's type (the types Celery's JSON carries:
    bytes, datetime, date, time, Decimal, UUID arrive and go back as themselves)."""
    logger.info("echoing %d values", len(value))
    return {"value": value, "types": {k: type(v).__name__ for k, v in value.items()}}


@shared_task(rate_limit="10/s")
def limited(n: int = 0) -> int:
    """At most ten a second across every worker (the rate-limit end-to-end test)."""
    return n


@shared_task(bind=True)
def steps(self, total: int = 10, seconds: float = 0.5) -> int:  # type: ignore[no-untyped-def]
    """Report its progress after each of ``total`` steps of ``seconds``."""
    for done in range(1, total + 1):
        time.sleep(seconds)
        self.update_state(state="PROGRESS", meta={"current": done, "total": total})
    return total


@shared_task(bind=True)
async def steps_async(self, total: int = 10, seconds: float = 0.5) -> int:  # type: ignore[no-untyped-def]
    """``steps`` as a coroutine: ``await self.aupdate_state(...)`` after each even step, and
    the blocking ``self.update_state(...)`` (written from a helper thread) after each odd one."""
    import asyncio

    for done in range(1, total + 1):
        await asyncio.sleep(seconds)
        meta = {"current": done, "total": total}
        if done % 2:
            self.update_state(state="PROGRESS", meta=meta)
        else:
            await self.aupdate_state(state="PROGRESS", meta=meta)
    return total
