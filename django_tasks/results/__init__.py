"""Result stores. Pick one with ``TASKS_RESULT_BACKEND``; see ``base.ResultStore``."""

from .base import ResultStore

__all__ = ["ResultStore"]
