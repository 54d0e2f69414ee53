"""What the machine itself allows, measured beside every run: the least time one round trip
to each server takes from Python, and a PostgreSQL commit that waits for the disk. A
one-by-one ``delay()`` cannot beat one round trip to its broker, nor a round trip through a
worker the chain of round trips it makes; read the tables' absolute figures against these.

``python -m benchmarks.floor`` prints them alone.
"""

from __future__ import annotations

import contextlib
import statistics
import time
import timeit
from collections.abc import Callable

from benchmarks.common import POSTGRES_URL
from benchmarks.frameworks import REDIS_URL

CALLS = 2000


def _per_call(call: Callable[[], object], calls: int = CALLS) -> float:
    """Microseconds a call, the median of five runs (after one to warm up)."""
    call()
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls // 5):
            call()
        runs.append((time.perf_counter() - start) / (calls // 5) * 1e6)
    return statistics.median(runs)


def redis_ping() -> float | None:
    import redis

    with contextlib.suppress(Exception):
        client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
        connection = client.connection_pool.get_connection()

        def ping() -> None:
            connection.send_command("PING")
            connection.read_response()
        return _per_call(ping)
    return None


def postgres() -> tuple[float, float] | None:
    """``SELECT 1``, and an ``INSERT`` committed with the disk flush (autocommit)."""
    import psycopg

    with contextlib.suppress(Exception), psycopg.connect(POSTGRES_URL, autocommit=True,
                                                         connect_timeout=5) as conn:
        select = _per_call(lambda: conn.execute("SELECT 1").fetchone())
        conn.execute("SET synchronous_commit = on")
        conn.execute("CREATE TABLE IF NOT EXISTS bench_floor_commit (v int)")
        try:
            commit = _per_call(lambda: conn.execute("INSERT INTO bench_floor_commit VALUES (1)"),
                               500)
        finally:
            conn.execute("DROP TABLE bench_floor_commit")
        return select, commit
    return None


def python_speed() -> float:
    """``sum(range(10000))`` in microseconds, best of five (as ``python -m timeit``)."""
    timer = timeit.Timer("sum(range(10000))")
    loops = 2000
    return min(timer.repeat(5, loops)) / loops * 1e6


def line() -> str:
    """The floor, as one sentence of the page."""
    parts = [f"`sum(range(10000))` {python_speed():.0f} µs"]
    ping = redis_ping()
    if ping is not None:
        parts.append(f"one Redis round trip (`PING`) {ping:.0f} µs ({1e6 / ping:,.0f}/s)")
    pg = postgres()
    if pg is not None:
        parts.append(f"one PostgreSQL round trip (`SELECT 1`) {pg[0]:.0f} µs, a commit that "
                     f"waits for the disk {pg[1]:.0f} µs")
    return "; ".join(parts)


if __name__ == "__main__":
    print(line())
