"""The admin: a read-only view of task results, the database queue and the workers.

Results are history: nobody edits them, so there is no add or change permission. Superusers
may delete results (the same thing ``taskprune`` does in bulk).
"""

from .queue import QueuedMessageAdmin, WorkerStateAdmin
from .results import TaskResultAdmin

__all__ = ["QueuedMessageAdmin", "TaskResultAdmin", "WorkerStateAdmin"]
