"""Wake idle consumers of a SQLite database without asking it: watch its files.

SQLite has no notifications, but every commit writes the database file or, in WAL mode, its
``-wal`` file, on the same machine. An idle consumer compares the files' size and change time
every few milliseconds (``os.stat``, no query, no lock) and looks at its queues when they
change: every millisecond just after a change, backing off to every 16 ms while nothing
changes. Any commit wakes it, a heartbeat's too, so a wake-up may find nothing; a commit missed
between two equal looks (same size, within one tick of the file system's clock) is found by
the consumer's next turn, at most a second later.
"""

from __future__ import annotations

import os
import threading
import time

#: How often a waiting consumer looks at the files, in seconds: first, and at most.
STAT_FIRST = 0.001
STAT_LONGEST = 0.016

Stamp = tuple[tuple[int, int, int] | None, ...]


def database_file(settings: dict[str, object]) -> str | None:
    """The file of a SQLite connection's settings, or None for an in-memory database."""
    name = str(settings.get("NAME") or "")
    if not name or name == ":memory:" or "mode=memory" in name:
        return None
    if name.startswith("file:"):
        name = name[5:].split("?", 1)[0]
    return os.path.abspath(name)


def stamp(path: str) -> Stamp:
    """Size, change time and inode of the database file and its write-ahead log."""
    marks: list[tuple[int, int, int] | None] = []
    for each in (path, path + "-wal"):
        try:
            st = os.stat(each)
        except OSError:
            marks.append(None)
        else:
            marks.append((st.st_size, st.st_mtime_ns, st.st_ino))
    return tuple(marks)


class FileWatch:
    """The stamp each thread saw last, per database file, and its pause between looks."""

    def __init__(self) -> None:
        self._local = threading.local()

    def wait(self, path: str, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a commit to ``path`` since this thread last
        looked: True if one came (the first call of a thread always says True: look), False
        on timeout."""
        seen: dict[str, tuple[Stamp | None, float]] = self._local.__dict__.setdefault("seen", {})
        before, pause = seen.get(path, (None, STAT_FIRST))
        deadline = time.monotonic() + timeout
        try:
            while True:
                now = stamp(path)
                if now != before:
                    before, pause = now, STAT_FIRST
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                time.sleep(min(pause, remaining))
                pause = min(pause * 2, STAT_LONGEST)
        finally:
            seen[path] = (before, pause)
