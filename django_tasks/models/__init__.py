from .control import ControlReply, ControlRequest
from .counters import Dashboard, TaskCounter
from .groups import TaskGroup
from .outbox import OutboxMessage
from .queue import QueuedMessage, Queues
from .ratelimits import RateBucket
from .results import TaskResult
from .schedules import BeatSlot, ClockedSchedule, CrontabSchedule, IntervalSchedule, PeriodicTask
from .workers import WorkerState

__all__ = ["BeatSlot", "ClockedSchedule", "ControlReply", "ControlRequest", "CrontabSchedule",
           "Dashboard", "IntervalSchedule", "OutboxMessage", "PeriodicTask", "QueuedMessage",
           "Queues", "RateBucket", "TaskCounter", "TaskGroup", "TaskResult", "WorkerState"]
