from __future__ import annotations

from django.db import models

#: Histogram columns ``h00`` … ``h27``: ``h00`` counts runs under 0.1 ms, ``hNN`` runs of
#: 0.1 ms * 2**(NN-1) up to 0.1 ms * 2**NN, ``h27`` runs of 0.1 ms * 2**26 (about 1 h 52 min)
#: and more.
BUCKETS = 28
BUCKET_FIELDS = tuple(f"h{i:02d}" for i in range(BUCKETS))


#: ``TaskCounter.period``: a minute's row, or an hour's (the same runs, summed for the hour).
MINUTE, HOUR = 1, 60


class TaskCounter(models.Model):
    """The runs of one task name that ended in one state in one minute (UTC), and the same
    runs again in their hour's row (``period`` 60), which the last day's tables read.

    Workers add to these rows in the transaction that stores a batch of outcomes: one
    upsert per (minute, task name, state) of the batch, never one per task. The dashboard
    and the Prometheus view read them instead of the result rows, so they stay fast with
    millions of results. ``taskprune`` folds rows older than the results it keeps (a day
    at least) into one row per (task name, state) at ``minute`` 1970-01-01, so totals only
    ever grow (what Prometheus counters need).
    """

    period = models.PositiveSmallIntegerField(
        default=MINUTE, help_text="minutes the row covers: 1, or 60 for an hour's row")
    minute = models.DateTimeField(help_text="the first minute the row covers, UTC")
    task_name = models.CharField(max_length=255)
    state = models.CharField(max_length=16)
    count = models.BigIntegerField(default=0, help_text="runs that ended in this state")
    runtime_count = models.BigIntegerField(default=0, help_text="runs with a known runtime")
    runtime_sum = models.FloatField(default=0.0, help_text="seconds")
    runtime_max = models.FloatField(default=0.0, help_text="seconds")
    slowest_task_id = models.CharField(max_length=255, blank=True, default="")
    last_task_id = models.CharField(max_length=255, blank=True, default="")
    h00 = models.BigIntegerField(default=0)
    h01 = models.BigIntegerField(default=0)
    h02 = models.BigIntegerField(default=0)
    h03 = models.BigIntegerField(default=0)
    h04 = models.BigIntegerField(default=0)
    h05 = models.BigIntegerField(default=0)
    h06 = models.BigIntegerField(default=0)
    h07 = models.BigIntegerField(default=0)
    h08 = models.BigIntegerField(default=0)
    h09 = models.BigIntegerField(default=0)
    h10 = models.BigIntegerField(default=0)
    h11 = models.BigIntegerField(default=0)
    h12 = models.BigIntegerField(default=0)
    h13 = models.BigIntegerField(default=0)
    h14 = models.BigIntegerField(default=0)
    h15 = models.BigIntegerField(default=0)
    h16 = models.BigIntegerField(default=0)
    h17 = models.BigIntegerField(default=0)
    h18 = models.BigIntegerField(default=0)
    h19 = models.BigIntegerField(default=0)
    h20 = models.BigIntegerField(default=0)
    h21 = models.BigIntegerField(default=0)
    h22 = models.BigIntegerField(default=0)
    h23 = models.BigIntegerField(default=0)
    h24 = models.BigIntegerField(default=0)
    h25 = models.BigIntegerField(default=0)
    h26 = models.BigIntegerField(default=0)
    h27 = models.BigIntegerField(default=0)

    class Meta:
        verbose_name = "task counter"
        constraints = [models.UniqueConstraint(
            fields=["period", "minute", "task_name", "state"], name="tasks_counter_key")]
        # The per-minute chart reads only these columns: an index-only scan.
        indexes = [models.Index(fields=["period", "minute", "state", "count"],
                                name="tasks_counter_chart_idx")]

    def __str__(self) -> str:
        span = "hour" if self.period == HOUR else "minute"
        return (f"{span} {self.minute:%Y-%m-%d %H:%M} {self.task_name} {self.state}: "
                f"{self.count}")


class Dashboard(TaskCounter):
    """The admin's dashboard page (``admin/dashboard.py``): a proxy, so that the admin
    lists it beside the other pages of django_tasks. It needs the view permission on task
    results, not one of its own."""

    class Meta:
        proxy = True
        verbose_name = verbose_name_plural = "dashboard"
        default_permissions = ()
