"""The one exception tree of django_tasks. Each docstring says how to fix the problem."""

import builtins

from django.core.exceptions import ImproperlyConfigured


class TaskError(Exception):
    """Base class of every error django_tasks raises."""


class ConfigurationError(TaskError, ImproperlyConfigured):
    """A ``TASKS_*`` setting is missing or wrong; the message names the setting to fix."""


class DuplicateTaskName(ConfigurationError):
    """Two functions were registered under one task name.

    Give one of them an explicit ``@shared_task(name=...)``, or remove the duplicate module.
    """


class NotRegistered(TaskError, KeyError):
    """No task with this name is registered in this process.

    Check the name, and that the module defining it is a ``tasks.py`` of an installed app
    (or is imported by one).
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "task not registered"


class EncodeError(TaskError, TypeError):
    """Arguments or a return value could not be serialized to JSON.

    Pass plain data (str, int, float, bool, None, list, dict, datetime, date, time, UUID,
    Decimal) and look objects up again by primary key inside the task.
    """


class DecodeError(TaskError, ValueError):
    """A message could not be decoded; it is rejected and never executed."""


class WorkerNameInUse(TaskError):
    """Another live worker already runs under this ``--hostname``.

    Two workers sharing a name would renew and release each other's leases. Give each worker
    its own name (``-n worker1@%h``, ``-n worker2@%h``), or stop the other one first.
    """


class BrokerUnreachable(TaskError):
    """A worker could not reach its broker's database to start.

    Check that the database runs and that ``DATABASES`` (or ``TASKS_BROKER_URL``) points at
    it; the worker waits ``TASKS_WORKER_STALL_TIMEOUT`` seconds for it before giving up.
    """


class ResultBackendDisabled(TaskError):
    """Results were asked for, but ``TASKS_RESULT_BACKEND`` is ``None``.

    Set ``TASKS_RESULT_BACKEND = "django://"`` (the default) to store results.
    """


class TimeoutError(TaskError, builtins.TimeoutError):  # Celery's name
    """``AsyncResult.get(timeout=...)`` waited that long and the task was not ready."""


class TaskRevokedError(TaskError):
    """The task was revoked (or expired) before it ran."""


class TaskTerminated(TaskRevokedError):
    """Raised inside a running task revoked with ``terminate=True`` (threads pool, or
    SIGTERM in a prefork process): the task ends REVOKED."""


class Retry(TaskError):
    """Raised by ``Task.retry()`` to tell the worker to run the task again later.

    Not an error: the worker records state RETRY and publishes the task again.
    """

    def __init__(self, message: str = "", exc: BaseException | None = None,
                 when: float | None = None) -> None:
        super().__init__(message or (f"Retry in {when}s" if when is not None else "Retry"))
        self.exc = exc
        self.when = when


class MaxRetriesExceededError(TaskError):
    """``Task.retry()`` was called more than ``max_retries`` times."""


class SoftTimeLimitExceeded(TaskError):
    """Raised inside a task when it runs past its ``soft_time_limit``.

    Catch it in the task to clean up (close files, roll back) before the hard limit.
    """

    @classmethod
    def for_task(cls, label: str, seconds: float) -> "SoftTimeLimitExceeded":
        return cls(f"Task {label} ran past its soft time limit of {seconds:g}s")


class TimeLimitExceeded(TaskError):
    """The task ran past its hard ``time_limit`` and was stopped; it is recorded as FAILURE."""

    @classmethod
    def for_task(cls, label: str, seconds: float, what: str = "") -> "TimeLimitExceeded":
        """``what`` says what was done to it (``its process was killed``), if anything."""
        tail = f"; {what}" if what else ""
        return cls(f"Task {label} ran past its hard time limit of {seconds:g}s{tail}")


class WorkerLostError(TaskError):
    """The process running the task died (killed, out of memory, crashed) too many times."""


class RemoteTaskError(TaskError):
    """Stands in for a task's exception whose type cannot be imported in this process."""


class ColdShutdown(BaseException):
    """Raised in the ``solo`` pool's main thread at a cold shutdown to stop the running task.

    It is never recorded as the task's failure: the message goes back to the queue instead.
    """


class ChordError(TaskError):
    """A chord's member failed, so its callback did not run: the callback's result. The
    message names the member and its error."""
