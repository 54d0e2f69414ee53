from __future__ import annotations

from django.db import models


class RateBucket(models.Model):
    """The shared bucket of one rate-limited task (``rate_limit="10/s"``), for every worker.
    ``name`` is the task's name and the rate's interval (``"app.tasks.call@0.1"``).

    ``free_at`` is when the bucket's next slot is free, in Unix seconds. Taking a slot is one
    atomic statement: the slot is ``max(free_at, now)``, and ``free_at`` moves one interval
    (``1 / rate``) past it (``brokers/buckets.py``).
    """

    name = models.CharField(max_length=255, unique=True, help_text="the task name")
    free_at = models.FloatField(help_text="when the next slot is free, Unix seconds")

    class Meta:
        verbose_name = "rate limit bucket"

    def __str__(self) -> str:
        return self.name
