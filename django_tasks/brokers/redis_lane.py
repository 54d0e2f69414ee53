"""The Redis broker's own path for its scripts: redis-py's connections, without its
per-command machinery.

A script call through ``redis.Redis`` goes through the client's retry wrapper, its
instrumentation and its pool's locks, which cost more than the round trip itself to a Redis
on the same host: 72-108 µs a call, where sending the same ``EVALSHA`` on a connection in hand
and reading its reply took 29-32 µs (redis-py 8.1 with hiredis, measured on a loaded
2-core machine). Every publish, fetch and ack is a script call, so a :class:`Lane` runs them
on connections of its own: made by the client's pool with the client's settings (timeouts,
password, TLS, health checks every ``health_check_interval``), kept in a free list that a
thread takes one from and gives it back to, one retry on a lost connection as the client
would, and the script loaded again when Redis answers ``NOSCRIPT`` (after a restart or
``SCRIPT FLUSH``).

A call made with ``look`` (a publish: ``delay()`` waits for it) waits for its reply by
looking for it again and again, for up to ``spin`` seconds, before it sleeps until it comes:
a process that sleeps on its socket is woken some tens of microseconds after the reply
arrives (a round trip to a Redis on the same host took 55 µs sleeping and 25 µs looking, on
a 2-core virtual machine), which is most of a ``delay()``. Looking costs the CPU the wait
would have left idle, so a lane looks only while replies come within ``spin``: once one does
not (a Redis far away, a machine too busy to answer quickly), it sleeps, and looks again
when a reply comes that soon. TLS connections always sleep, and so do the other calls (a
worker's fetches and acks): in a drain that keeps every CPU busy, looking took time from
Redis and from the worker's other processes (a drain without results 6 % slower).

Blocking reads (``BLPOP``) and pipelines stay on the client: they are not on the hot path.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import redis
from redis.commands.core import Script

#: The pause before the one retry of a call whose connection was lost, as the client's own
#: retry waits (``redis.py``): a Redis restarting or failing over takes longer than this, and
#: the retry then fails fast too.
RETRY_PAUSE = 0.1
#: How long a call looks for its reply before it sleeps until the reply comes (the
#: broker URL's ``spin_us`` option; 0 never looks).
SPIN_SECONDS = 100e-6


class Lane:
    """Script calls on connections taken from a free list (safe across threads and
    ``fork``: a child forgets its parent's connections without touching them)."""

    def __init__(self, pool: redis.ConnectionPool, spin: float = SPIN_SECONDS) -> None:
        self._pool = pool
        self._spin = spin
        #: Whether the last reply came within ``spin``: the next call looks for its reply.
        self._spinning = spin > 0
        self._pid = os.getpid()
        self._free: list[Any] = []
        self._made: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()

    def call(self, script: Script, args: Sequence[Any], *, look: bool = False) -> Any:
        """``EVALSHA`` of ``script`` with no keys and ``args``; its reply, looked for before
        sleeping with ``look``. Raises redis-py's ``ConnectionError``/``TimeoutError`` when
        the call failed twice, and the script's own error (``ResponseError``) as the client
        would."""
        return self._complete(self._take(), script, args, sent=False, look=look)

    def start(self, script: Script, args: Sequence[Any], *, look: bool = False) -> Reply:
        """:meth:`call` in two halves: send the ``EVALSHA`` now, and return the
        :class:`Reply` that reads its reply when called (and raises what ``call`` would),
        so that the caller can do other work while Redis runs the script. The connection is
        held until then: call it, even after an error of one's own."""
        connection = self._take()
        try:
            connection.send_command("EVALSHA", script.sha, 0, *args)
        except (redis.ConnectionError, redis.TimeoutError):
            connection.disconnect()
            time.sleep(RETRY_PAUSE)  # the failed send was the first try: one more is left
            return Reply(connection, functools.partial(
                self._complete, connection, script, args, sent=False, look=look, retries=0),
                sent=False)
        except BaseException:
            connection.disconnect()
            raise
        return Reply(connection, functools.partial(
            self._complete, connection, script, args, sent=True, look=look))

    def close(self) -> None:
        """Disconnect every connection this lane made, in use or not (they connect again
        when next used); in a forked child, only forget them."""
        if self._pid != os.getpid():
            self._forked()
            return
        with self._lock:
            self._free.clear()
            made = list(self._made)
        for connection in made:
            connection.disconnect()

    # -- internals -----------------------------------------------------------------------

    def _complete(self, connection: Any, script: Script, args: Sequence[Any], *, sent: bool,
                  look: bool, retries: int = 1) -> Any:
        """The reply of the script call on ``connection`` (``sent``: its ``EVALSHA`` is on
        its way), sending it again on a lost connection up to ``retries`` times; the
        connection goes back to the free list unless it may still carry a reply."""
        try:
            while True:
                try:
                    reply = self._reply(connection, script, args, sent, look)
                    break
                except (redis.ConnectionError, redis.TimeoutError):
                    connection.disconnect()
                    if retries <= 0:
                        raise
                    retries, sent = retries - 1, False
                    time.sleep(RETRY_PAUSE)  # then it connects again
        except redis.ResponseError:  # the script's own error: its reply was read whole
            self._free.append(connection)
            raise
        except BaseException:
            connection.disconnect()  # a reply may still be on its way: never reuse it
            raise
        self._free.append(connection)
        return reply

    def _reply(self, connection: Any, script: Script, args: Sequence[Any], sent: bool,
               look: bool) -> Any:
        try:
            if not sent:
                connection.send_command("EVALSHA", script.sha, 0, *args)
            return self._read(connection) if look else connection.read_response()
        except redis.exceptions.NoScriptError:
            connection.send_command("SCRIPT", "LOAD", script.script)
            script.sha = connection.read_response()
            connection.send_command("EVALSHA", script.sha, 0, *args)
            return connection.read_response()

    def _read(self, connection: Any) -> Any:
        """The reply on ``connection``: looked for until it begins to arrive, for up to
        ``spin`` seconds, if the last one came that soon; then read, sleeping while it has
        not come. A read that was not looked for is timed, to know whether to look next."""
        sock = connection._sock
        if self._spin <= 0 or type(sock) is not socket.socket:
            return connection.read_response()  # TLS (or spinning off): always sleep
        if self._spinning:
            self._spinning = _looked(sock, self._spin)
            return connection.read_response()
        started = time.perf_counter()
        reply = connection.read_response()
        self._spinning = time.perf_counter() - started <= self._spin
        return reply

    def _take(self) -> Any:
        if self._pid != os.getpid():
            self._forked()
        try:
            return self._free.pop()  # atomic: no lock on the way in
        except IndexError:
            pass
        pool = self._pool
        connection = pool.connection_class(**pool.connection_kwargs)
        with self._lock:
            self._made.add(connection)
        return connection

    def _forked(self) -> None:
        """In a child after ``fork``: the parent's connections are its own; drop ours
        (closing only this process's copies of their sockets)."""
        with self._lock:
            if self._pid == os.getpid():
                return
            for connection in list(self._made):
                sock = getattr(connection, "_sock", None)
                connection._sock = None
                if sock is not None:
                    sock.close()
            self._free = []
            self._made = weakref.WeakSet()
            self._pid = os.getpid()


class Reply:
    """A script call sent (:meth:`Lane.start`): called, its reply."""

    def __init__(self, connection: Any, complete: Callable[[], Any], *,
                 sent: bool = True) -> None:
        self._connection = connection
        self._complete = complete
        self._sent = sent

    def __call__(self) -> Any:
        return self._complete()

    def ready(self) -> bool:
        """Whether to read the reply now: it has begun to arrive, or waiting longer gains
        nothing (the send failed and reading sends the call again, or the connection broke
        and reading raises what ``call`` would)."""
        if not self._sent:
            return True
        try:
            return bool(self._connection.can_read(timeout=0))
        except Exception:  # noqa: BLE001 - a broken connection: the read raises what it should
            return True


def _looked(sock: socket.socket, spin: float) -> bool:
    """Look for bytes to read on ``sock`` until some come (True) or ``spin`` seconds pass
    (False), without reading them."""
    timeout = sock.gettimeout()
    sock.settimeout(0)  # each look returns at once (a timeout makes recv poll first)
    try:
        end = time.perf_counter() + spin
        while True:
            try:
                sock.recv(1, socket.MSG_PEEK)
                return True  # bytes, or b"" at a closed connection: the read will tell
            except BlockingIOError:
                if time.perf_counter() > end:
                    return False
            except OSError:
                return True  # a broken connection: the read raises what it should
    finally:
        sock.settimeout(timeout)
