"""The fault suite's own machinery, without workers or databases: the journal, what a fault
explains, the duplicate and overlap counts, the log digest, and the proxy's three modes
(against an echo server on 127.0.0.1). Quick; marked ``faults`` but not ``e2e``."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import (
    LEASE,
    Execution,
    Fault,
    by_task,
    count_duplicates,
    count_overlaps,
    ended_count,
    notable_lines,
    read_journal,
)
from .proxy import BLACKHOLE, PASS, REFUSE, Proxy

pytestmark = pytest.mark.faults


def run(task: str = "t", pid: int = 1, host: str = "A", start: float = 10.0,
        end: float | None = 11.0) -> Execution:
    return Execution(task, pid, 1, host, 1, start, end)


# -- the journal ------------------------------------------------------------------------------


def test_the_journal_pairs_starts_with_ends_per_process_and_thread(tmp_path: Path) -> None:
    journal = tmp_path / "journal.txt"
    journal.write_text(
        "S t1 100 7 A 1 10.0\n"
        "S t2 100 8 A 1 10.5\n"  # another thread of the same process
        "E t2 100 8 A 1 10.6\n"
        "E t1 100 7 A 1 11.0 fail\n"
        "S t1 200 7 B 2 12.0\n"  # killed: never ends
        "S t3 300 9 B\n")  # cut short: ignored
    runs = read_journal(journal)
    assert [(r.task_id, r.pid, r.start, r.end, r.note) for r in runs] == [
        ("t1", 100, 10.0, 11.0, "fail"), ("t2", 100, 10.5, 10.6, ""),
        ("t1", 200, 12.0, None, "")]
    assert ended_count(journal) == 2
    assert read_journal(tmp_path / "missing.txt") == []


# -- faults, duplicates, overlaps -------------------------------------------------------------


def test_a_kill_explains_runs_of_that_instance_only() -> None:
    kill = Fault("kill", "A", start=20.0, end=20.0, since=5.0)
    assert kill.covers(run(start=10.0))
    assert not kill.covers(run(start=21.0)), "started after the kill: the next instance"
    assert not kill.covers(run(start=1.0)), "started before this instance did"
    assert not kill.covers(run(host="B"))


def test_a_freeze_or_outage_explains_only_when_longer_than_the_lease() -> None:
    long = Fault("freeze", "A", start=10.5, end=10.5 + LEASE + 1)
    short = Fault("outage", "A", start=10.5, end=10.5 + LEASE / 2)
    assert long.covers(run(start=10.0, end=11.0))
    assert not long.covers(run(start=20.0, end=21.0)), "started after it ended"
    assert not short.covers(run(start=10.0, end=11.0))


def test_a_process_death_may_explain_only_what_it_cut_short() -> None:
    death = Fault("process-death", None, 20.0, 20.0, pids=frozenset({1}), interrupted_only=True,
                  thread=5, window=1.0)
    assert death.covers(run(end=None))
    assert not death.covers(run(end=11.0)), "it had finished: its re-run is the worker's fault"
    assert not death.covers(run(pid=2, end=None))
    assert not death.covers(run(start=25.0, end=None)), "that started after the death"
    other_thread = Execution("t", 1, 6, "A", 1, 19.4, 19.5)  # its outcome may be in flight
    same_thread = Execution("t", 1, 5, "A", 1, 19.4, 19.5)  # written in a batch: so may this
    long_before = Execution("t", 1, 5, "A", 1, 17.0, 17.1)
    assert death.covers(other_thread)
    assert death.covers(same_thread)
    assert not death.covers(long_before), "a batch is written within the window"


def test_duplicates_are_explained_by_a_fault_on_the_run_before() -> None:
    runs = by_task([run("t1", start=10.0, end=None), run("t1", host="B", start=15.0),
                    run("t2", start=10.0), run("t2", start=12.0), run("t3")])
    kill = Fault("kill", "A", start=11.0, end=11.0, since=0.0)
    found = count_duplicates(runs, [kill], origin=0.0)
    assert (found.explained, found.unexplained) == (2, 0)
    found = count_duplicates(runs, [], origin=0.0)
    assert (found.explained, found.unexplained) == (0, 2)
    assert "unexplained" in found.details[0] and "task t" in found.details[0]


def test_overlaps_count_only_runs_outside_faulted_workers() -> None:
    runs = by_task([run("t1", pid=1, start=10.0, end=14.0), run("t1", pid=2, start=12.0,
                                                                  end=13.0)])
    assert len(count_overlaps(runs, [], origin=0.0)) == 1
    freeze = Fault("freeze", "A", start=10.5, end=10.5 + LEASE + 1)
    assert count_overlaps(runs, [freeze], origin=0.0) == []
    apart = by_task([run("t1", start=10.0, end=11.0), run("t1", start=11.5, end=12.0)])
    assert count_overlaps(apart, [], origin=0.0) == []


def test_log_lines_are_grouped_by_shape_with_the_traceback_s_last_line() -> None:
    output = (
        "[2026-01-01 10:00:00,000: INFO/MainProcess] Task x received\n"
        "[2026-01-01 10:00:00,001: WARNING/ForkPoolWorker-1] Cannot record 2 outcomes (x)\n"
        "[2026-01-01 10:00:00,002: WARNING/ForkPoolWorker-2] Cannot record 5 outcomes (x)\n"
        "[2026-01-01 10:00:00,003: ERROR/MainProcess] Unexpected error\n"
        "Traceback (most recent call last):\n"
        '  File "x.py", line 1, in <module>\n'
        "ValueError: boom\n")
    lines = notable_lines([output])
    assert lines[0].startswith("2x ") and "Cannot record 2 outcomes" in lines[0]
    assert lines[1].startswith("1x ") and lines[1].endswith("-> ValueError: boom")
    assert not any("INFO" in line for line in lines)


# -- the proxy --------------------------------------------------------------------------------


@contextlib.contextmanager
def echo_server() -> Iterator[tuple[str, int]]:
    """A TCP server on 127.0.0.1 that sends back whatever it receives."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # the proxy resets it in a refuse outage
            while data := conn.recv(65536):
                conn.sendall(data)

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                conn, _ = listener.accept()
                threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def roundtrip(sock: socket.socket, payload: bytes, timeout: float = 5) -> bytes:
    sock.settimeout(timeout)
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def test_the_proxy_passes_refuses_and_black_holes() -> None:
    with echo_server() as upstream, Proxy(upstream) as proxy:
        address = ("127.0.0.1", proxy.port)
        with socket.create_connection(address, timeout=5) as conn:
            assert roundtrip(conn, b"x" * 200_000) == b"x" * 200_000  # more than one chunk

            proxy.set_mode(REFUSE)
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(address, timeout=5).close()
            conn.settimeout(5)
            with pytest.raises(ConnectionResetError):  # a RST, not a FIN (b"")
                conn.recv(1)
        assert proxy.stats.reset == 1

        proxy.set_mode(PASS)  # listening again, on the same port
        with socket.create_connection(address, timeout=5) as conn, \
                socket.create_connection(address, timeout=5) as other:
            assert roundtrip(conn, b"back") == b"back"
            proxy.set_mode(BLACKHOLE)
            with socket.create_connection(address, timeout=5) as late:  # accepted, not relayed
                conn.sendall(b"held")
                late.sendall(b"late")
                for sock in (conn, late):
                    sock.settimeout(0.5)
                    with pytest.raises(TimeoutError):
                        sock.recv(10)
                started = time.monotonic()
                proxy.set_mode(PASS)
                for sock, sent in ((conn, b"held"), (late, b"late")):
                    sock.settimeout(5)
                    assert sock.recv(10) == sent
                assert time.monotonic() - started < 5
            assert roundtrip(other, b"still open") == b"still open"
        assert proxy.stats.held_at_blackhole == 2 and proxy.stats.accepted_in_blackhole == 1
        assert [mode for mode, _, _ in proxy.stats.outages] == [REFUSE, BLACKHOLE]


def test_the_proxy_rewrites_a_database_url() -> None:
    with Proxy(("127.0.0.1", 9)) as proxy:
        url = proxy.url_for("postgres://postgres:secret@127.0.0.1:5432/db?sslmode=disable")
        assert url == f"postgres://postgres:secret@127.0.0.1:{proxy.port}/db?sslmode=disable"
        assert proxy.url_for("mysql://127.0.0.1/db") == f"mysql://127.0.0.1:{proxy.port}/db"


def test_the_runner_sets_django_up_for_the_messages_it_builds(tmp_path: Path) -> None:
    """``python -m tests.faults`` runs outside pytest: the bad rows it writes are built from
    messages, which read the project's settings."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    code = ("from pathlib import Path\n"
            "import tests.faults.__main__\n"
            "from tests.faults.scenarios import bad_rows_for\n"
            f"print(len(bad_rows_for(Path({str(tmp_path / 'journal')!r}))))\n")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, cwd=Path(__file__).resolve().parents[2], check=False)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == 11
