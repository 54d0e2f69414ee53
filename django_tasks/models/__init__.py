from .queue import QueuedMessage
from .results import TaskResult
from .workers import WorkerState

__all__ = ["QueuedMessage", "TaskResult", "WorkerState"]
