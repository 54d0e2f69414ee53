from __future__ import annotations

from django.db import models

from ..states import TaskState


class TaskGroup(models.Model):
    """A group's member ids (``GroupResult.save()``), and a chord's counter.

    A chord's row is written with its members' messages. Each member that succeeds adds one
    to ``done`` in the transaction that stores its outcome; the one that makes ``done`` reach
    ``size`` publishes the callback in that same transaction. The first member that fails
    sets ``state`` to FAILURE and names itself in ``failed_task_id``; the callback never runs.
    Nothing polls.
    """

    group_id = models.CharField("group id", max_length=255, unique=True)
    task_ids = models.TextField(default="[]", help_text="the members' task ids in order, JSON")
    size = models.PositiveIntegerField(default=0, help_text="members")
    done = models.PositiveIntegerField(default=0, help_text="members that succeeded (chords)")
    callback = models.TextField(null=True, blank=True,
                                help_text="a chord's callback signature, JSON")
    callback_id = models.CharField("callback task id", max_length=255, null=True, blank=True)
    state = models.CharField(max_length=16, choices=TaskState.choices,
                             default=TaskState.PENDING)
    failed_task_id = models.CharField("failed member", max_length=255, null=True, blank=True)
    created_at = models.DateTimeField("created", db_index=True)
    date_done = models.DateTimeField("done", null=True, blank=True)

    class Meta:
        verbose_name = "task group"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        kind = "chord" if self.callback else "group"
        return f"{kind} {self.group_id} ({self.size} tasks) {self.state}"
