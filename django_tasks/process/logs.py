"""Logging of long-running processes: the level, a handler if the project has none, ``print``
routed to the log in forked children, and flushing before an abrupt exit."""

from __future__ import annotations

import io
import logging
import sys

from ..utils.log import WorkerFormatter


def parse_level(loglevel: str) -> int:
    """The logging level named ``loglevel`` (any case); ValueError naming the choices."""
    number = logging.getLevelName(str(loglevel).upper())
    if not isinstance(number, int):
        raise ValueError(f"--loglevel {loglevel!r} is not one of DEBUG, INFO, WARNING, ERROR, "
                         "CRITICAL")
    return number


def configure(loglevel: str) -> None:
    """Set the level of django_tasks' loggers, adding a handler if the project has none
    (task loggers' records in it show the task's name and id)."""
    root = logging.getLogger("django_tasks")
    root.setLevel(parse_level(loglevel))
    if not root.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(WorkerFormatter())
        root.addHandler(handler)


class PrintToLog(io.TextIOBase):
    """Stands in for ``sys.stdout`` in pool processes: each printed line is a WARNING."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self._buffer = ""

    def write(self, text: str) -> int:
        self._buffer += text
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            if line:
                self.logger.warning("%s", line)
        return len(text)

    def flush(self) -> None:
        if self._buffer:
            self.logger.warning("%s", self._buffer)
            self._buffer = ""


def redirect_print() -> None:
    sys.stdout = PrintToLog(logging.getLogger("django_tasks.task.stdout"))


def flush() -> None:
    """Flush django_tasks' handlers and standard error (before ``os._exit``)."""
    for handler in logging.getLogger("django_tasks").handlers:
        handler.flush()
    sys.stderr.flush()
