from __future__ import annotations

from django.db import models


class WorkerState(models.Model):
    """A running ``taskworker`` or ``taskbeat``, refreshed on every heartbeat."""

    hostname = models.CharField(max_length=255, unique=True)
    kind = models.CharField(max_length=16, default="worker",
                            choices=[("worker", "worker"), ("beat", "beat")])
    pid = models.PositiveIntegerField()
    pool = models.CharField(max_length=16)
    concurrency = models.PositiveIntegerField()
    queues = models.CharField(max_length=1024)
    started_at = models.DateTimeField()
    last_heartbeat = models.DateTimeField(db_index=True)
    #: Tasks this worker ran and, of those, failed, since it started (as of its last beat).
    tasks_done = models.PositiveBigIntegerField(default=0)
    tasks_failed = models.PositiveBigIntegerField(default=0)

    class Meta:
        verbose_name = "worker"
        verbose_name_plural = "workers and beats"

    def __str__(self) -> str:
        return self.hostname
