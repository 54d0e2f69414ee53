from __future__ import annotations

from django.db import models

from ..states import TaskState


class TaskResultQuerySet(models.QuerySet["TaskResult"]):
    def ready(self) -> TaskResultQuerySet:
        return self.filter(state__in=[TaskState.SUCCESS, TaskState.FAILURE, TaskState.REVOKED])

    def done_before(self, moment: object) -> TaskResultQuerySet:
        return self.ready().filter(date_done__lt=moment)


class TaskResult(models.Model):
    """One row per task id: created at enqueue (PENDING), updated when a worker finishes."""

    # Unique through Meta.constraints, not unique=True: on PostgreSQL, Django gives a unique
    # CharField a second index for LIKE (varchar_pattern_ops) that nothing here uses, and
    # every outcome's UPDATE writes an entry into each index (about a fifth of its cost).
    task_id = models.CharField("task id", max_length=255)
    task_name = models.CharField("task name", max_length=255)
    state = models.CharField(max_length=16, choices=TaskState.choices,
                             default=TaskState.PENDING)
    args = models.TextField(default="[]", help_text="positional arguments, JSON")
    kwargs = models.TextField(default="{}", help_text="keyword arguments, JSON")
    result = models.TextField(null=True, blank=True, help_text="return value or error, JSON")
    traceback = models.TextField(null=True, blank=True)
    queue = models.CharField(max_length=255, blank=True, default="")
    priority = models.PositiveSmallIntegerField(default=0)
    worker = models.CharField(max_length=255, blank=True, default="")
    attempts = models.PositiveIntegerField(default=0, help_text="deliveries to a worker")
    retries = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField("created", db_index=True)
    started_at = models.DateTimeField("started", null=True, blank=True)
    date_done = models.DateTimeField("done", null=True, blank=True)
    # A workflow's ids (Celery's headers): the first task of the workflow, the task whose
    # outcome queued this one, the group it belongs to.
    root_id = models.CharField("root id", max_length=255, null=True, blank=True)
    parent_id = models.CharField("parent id", max_length=255, null=True, blank=True)
    group_id = models.CharField("group id", max_length=255, null=True, blank=True)

    objects = TaskResultQuerySet.as_manager()

    class Meta:
        verbose_name = "task result"
        ordering = ["-created_at"]
        permissions = [("rerun_taskresult", "Can queue a finished task again"),
                       ("revoke_taskresult", "Can revoke or terminate a task")]
        constraints = [
            models.UniqueConstraint(fields=["task_id"], name="tasks_result_task_id_key"),
        ]
        indexes = [
            models.Index(fields=["state", "-created_at"], name="tasks_result_state_idx"),
            models.Index(fields=["task_name", "-created_at"], name="tasks_result_name_idx"),
            models.Index(fields=["queue", "-created_at"], name="tasks_result_queue_idx"),
            models.Index(fields=["date_done"], name="tasks_result_prune_idx",
                         condition=models.Q(date_done__isnull=False)),
            models.Index(fields=["parent_id"], name="tasks_result_parent_idx",
                         condition=models.Q(parent_id__isnull=False)),
            models.Index(fields=["group_id"], name="tasks_result_group_idx",
                         condition=models.Q(group_id__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.task_name}[{self.task_id}] {self.state}"

    @property
    def runtime(self) -> float | None:
        if self.started_at and self.date_done:
            return (self.date_done - self.started_at).total_seconds()
        return None
