from __future__ import annotations

from django.db import models


class OutboxMessage(models.Model):
    """A message waiting for its transaction's commit before it goes to a broker that cannot
    join the transaction (Redis, RabbitMQ).

    ``delay()`` inside ``transaction.atomic()`` writes the row; after the commit the same
    process claims it, publishes it and deletes it. A row whose process died in between is
    claimed by a worker's relay. On a broker that cannot delay messages (AMQP), a countdown,
    eta or retry delay is a row with ``due_at``, which the relay publishes when due.

    ``claimed_until`` is the claim's end: a row is free to claim when it is empty (and the
    row is older than the relay's grace, or due) or in the past. ``claimed_by`` is the
    claiming process (``pid@host``): a worker whose pool process died ends that process's
    claims at once, instead of letting them run out.
    """

    task_id = models.CharField(max_length=255)
    queue = models.CharField(max_length=255)
    body = models.TextField(help_text="the message envelope, JSON")
    created_at = models.DateTimeField()
    due_at = models.DateTimeField(
        null=True, blank=True,
        help_text="a delayed message held here for a broker that cannot delay: published "
                  "when due")
    claimed_until = models.DateTimeField(null=True, blank=True)
    claim = models.BigIntegerField(
        null=True, blank=True, help_text="names the current claim: only its holder deletes")
    claimed_by = models.CharField(max_length=255, blank=True, default="",
                                  help_text="the process that holds the claim: pid@host")

    class Meta:
        verbose_name = "outbox message"
        indexes = [models.Index(fields=["created_at"], name="tasks_outbox_created_idx"),
                   models.Index(fields=["due_at"], name="tasks_outbox_due_idx",
                                condition=models.Q(due_at__isnull=False))]

    def __str__(self) -> str:
        return f"{self.queue}: {self.task_id}"
