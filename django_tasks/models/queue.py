from __future__ import annotations

from django.db import models


class QueuedMessage(models.Model):
    """A message on the database broker (``django://``).

    ``visible_at`` is the one clock of a row: when a delayed message becomes due, or when
    the lease of the worker holding it runs out. A row is deliverable when
    ``visible_at <= now``; claiming it moves ``visible_at`` to the lease's end and every
    heartbeat of the holder moves it again. Acking deletes the row. Each claim writes a new
    ``lease_token``; a write for a delivery counts only while the row still has its token.
    """

    queue = models.CharField(max_length=255)
    priority = models.PositiveSmallIntegerField(default=0)
    task_id = models.CharField(max_length=255)
    body = models.TextField(help_text="the message envelope, JSON")
    visible_at = models.DateTimeField()
    lease_owner = models.CharField(max_length=255, null=True, blank=True)
    lease_token = models.BigIntegerField(
        null=True, blank=True,
        help_text="names the current lease: acks and outcomes under an older one are refused")
    deliveries = models.PositiveIntegerField(default=0)
    runs = models.PositiveIntegerField(
        default=0, db_default=0,
        help_text="times it was known to be running when its process or worker died")
    created_at = models.DateTimeField()

    class Meta:
        verbose_name = "queued message"
        indexes = [
            models.Index(fields=["queue", "-priority", "visible_at", "id"],
                         name="tasks_queue_claim_idx"),
            models.Index(fields=["lease_owner"], name="tasks_queue_owner_idx",
                         condition=models.Q(lease_owner__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.queue}: {self.task_id}"


class Queues(QueuedMessage):
    """The admin's queues page (``admin/queues.py``): ready, delayed and in-flight messages
    per queue on whichever broker runs. A proxy, so that the admin lists it beside the other
    pages of django_tasks; it needs the view permission on task results, not one of its own."""

    class Meta:
        proxy = True
        verbose_name = verbose_name_plural = "queues"
        default_permissions = ()
