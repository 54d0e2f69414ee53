"""The admin: a read-only view of task results, the database queue and the workers.

Permissions, as an operator expects them:

- Nobody adds or changes anything here: results are history written by workers, queue rows
  belong to the broker, worker rows to their heartbeats. Staff with the *view* permission
  (and superusers) can look at everything.
- Revoke and terminate (``revoking.py``) need ``revoke_taskresult``; queue again needs
  ``rerun_taskresult``. Each asks or reports what it did, and is a POST with CSRF.
- Superusers may delete a task result from its page (bulk deletion is ``taskprune``'s job,
  in bounded batches) and may delete worker rows a killed worker left behind, never a live
  worker's (its heartbeat would write it again).
- Queued messages and outbox rows cannot be deleted: that would drop a task silently and
  leave its result PENDING forever. Revoke it instead (the result list's action, or
  ``AsyncResult(id).revoke()``).

The result list is built for tables of millions of rows: the count behind the pagination
stops at ``CappedCountPaginator.limit``, filters list their choices without scanning the
table, search by task id uses the unique index, and the big text columns are not loaded
for the list. The dashboard (``dashboard.py``) reads per-minute counters, never the result
rows; the queues page (``queues.py``) asks the broker for its counts in one call.
"""

from .dashboard import DashboardAdmin
from .outbox import OutboxMessageAdmin
from .queue import QueuedMessageAdmin
from .queues import QueuesAdmin
from .results import TaskResultAdmin
from .schedules import PeriodicTaskAdmin
from .workers import WorkerStateAdmin

__all__ = ["DashboardAdmin", "OutboxMessageAdmin", "PeriodicTaskAdmin", "QueuedMessageAdmin",
           "QueuesAdmin", "TaskResultAdmin", "WorkerStateAdmin"]
