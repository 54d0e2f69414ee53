"""The worker process: consume → execute → record → ack, supervised by a main process."""

from .main import Worker

__all__ = ["Worker"]
