"""Task states, with Celery's names, shared by the API and the ``TaskResult`` model."""

from django.db import models


class TaskState(models.TextChoices):
    PENDING = "PENDING", "Pending"
    STARTED = "STARTED", "Started"
    RETRY = "RETRY", "Retry"
    SUCCESS = "SUCCESS", "Success"
    FAILURE = "FAILURE", "Failure"
    REVOKED = "REVOKED", "Revoked"


PENDING = TaskState.PENDING.value
STARTED = TaskState.STARTED.value
RETRY = TaskState.RETRY.value
SUCCESS = TaskState.SUCCESS.value
FAILURE = TaskState.FAILURE.value
REVOKED = TaskState.REVOKED.value

#: States after which a task never runs again.
READY_STATES = frozenset({SUCCESS, FAILURE, REVOKED})
UNREADY_STATES = frozenset({PENDING, STARTED, RETRY})
EXCEPTION_STATES = frozenset({FAILURE, RETRY, REVOKED})
PROPAGATE_STATES = frozenset({FAILURE, REVOKED})
ALL_STATES = READY_STATES | UNREADY_STATES
#: A task's own states (``update_state(state="PROGRESS")``) are stored in a column this wide.
MAX_STATE_LENGTH = 16
