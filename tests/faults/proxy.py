"""A TCP proxy on 127.0.0.1 that the fault suite puts between a worker and its database.

One thread owns every socket (a ``selectors`` loop), so switching modes is immediate and
never races a relay in flight. Modes:

- **pass-through**: bytes flow both ways as they come;
- **refuse**: the listening socket is closed (new connects get ECONNREFUSED) and every relayed
  connection is reset on both sides (RST, not FIN); when it ends the proxy listens again on
  the same port;
- **blackhole**: connections stay open but nothing is relayed in either direction, and new
  connections are accepted but not relayed (not even connected upstream); when it ends,
  everything held (in the kernel's socket buffers and ours) is relayed and the new
  connections are connected through.

Standard library only. ``Proxy`` is a context manager; ``outage(mode)`` one that ends the
outage on leaving::

    with Proxy(("127.0.0.1", 5432)) as proxy:
        url = f"postgres://postgres@127.0.0.1:{proxy.port}/db"
        ...
        with proxy.outage("blackhole"):
            time.sleep(10)
"""

from __future__ import annotations

import contextlib
import errno
import queue
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

PASS, REFUSE, BLACKHOLE = "pass", "refuse", "blackhole"
MODES = (PASS, REFUSE, BLACKHOLE)
CHUNK = 65536
HIGH_WATER = 1 << 20  # stop reading a side while this much waits to be written to the other


@dataclass
class ProxyStats:
    """What the proxy saw; read it after ``stop()`` or under no particular lock (ints)."""

    accepted: int = 0
    upstream_failures: int = 0
    reset: int = 0  # connections reset by a refuse outage
    held_at_blackhole: int = 0  # connections open when a blackhole began
    accepted_in_blackhole: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    outages: list[tuple[str, float, float]] = field(default_factory=list)  # mode, start, end


class _Side:
    """One socket of a relayed pair and the bytes waiting to be written to it."""

    def __init__(self, sock: socket.socket | None) -> None:
        self.sock = sock
        self.outbox = bytearray()
        self.read_closed = False  # its peer will send nothing more (EOF seen)


class _Link:
    """A client connection and its upstream connection."""

    def __init__(self, client: socket.socket) -> None:
        self.client = _Side(client)
        self.upstream = _Side(None)
        self.closed = False

    def sides(self) -> list[_Side]:
        return [self.client, self.upstream]

    def other(self, side: _Side) -> _Side:
        return self.upstream if side is self.client else self.client


def _reset(sock: socket.socket | None) -> None:
    """Close ``sock`` so that the peer gets a RST, not a FIN."""
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class Proxy:
    """Relay ``127.0.0.1:<port>`` to ``upstream``; switch modes with ``set_mode``."""

    def __init__(self, upstream: tuple[str, int], *, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        if host != "127.0.0.1":
            raise ValueError("the fault proxy only listens on 127.0.0.1")
        self.upstream = upstream
        self.host = host
        self.port = port
        self.mode = PASS
        self.stats = ProxyStats()
        self._selector = selectors.DefaultSelector()
        self._listener: socket.socket | None = None
        self._links: list[_Link] = []
        self._commands: queue.Queue[tuple[Callable[[], Any], threading.Event]] = queue.Queue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._outage_start = 0.0
        self.error: BaseException | None = None

    # -- control (any thread) -----------------------------------------------------------

    def start(self) -> Proxy:
        self._listen()
        self._selector.register(self._wake_r, selectors.EVENT_READ, ("wake", None))
        self._thread = threading.Thread(target=self._loop, name=f"fault-proxy:{self.port}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        self._call(self._shutdown)
        self._thread.join(timeout=10)
        self._thread = None
        for sock in (self._wake_r, self._wake_w):
            sock.close()
        self._selector.close()

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_mode(self, mode: str) -> None:
        """Switch to ``mode`` (one of ``MODES``); returns once the switch is done."""
        if mode not in MODES:
            raise ValueError(f"unknown proxy mode {mode!r}; use one of {MODES}")
        self._call(lambda: self._switch(mode))

    @contextlib.contextmanager
    def outage(self, mode: str) -> Iterator[None]:
        """``mode`` inside the block, pass-through again after it."""
        self.set_mode(mode)
        try:
            yield
        finally:
            self.set_mode(PASS)

    def url_for(self, url: str) -> str:
        """``url`` (a database URL to ``upstream``) rewritten to go through the proxy."""
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        auth = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        return parts._replace(netloc=f"{auth}{self.host}:{self.port}").geturl()

    def _call(self, fn: Callable[[], Any], timeout: float = 30) -> None:
        if self.error is not None:
            raise RuntimeError(f"the fault proxy's thread failed: {self.error!r}")
        done = threading.Event()
        self._commands.put((fn, done))
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if not done.wait(timeout):
            raise RuntimeError(f"the fault proxy did not answer within {timeout}s")
        if self.error is not None:
            raise RuntimeError(f"the fault proxy's thread failed: {self.error!r}")

    # -- the loop (its own thread) --------------------------------------------------------

    def _loop(self) -> None:
        try:
            while not self._stopping:
                for key, events in self._selector.select(timeout=1.0):
                    kind, link = key.data
                    if kind == "wake":
                        self._run_commands()
                    elif kind == "listen":
                        self._accept()
                    elif not link.closed:
                        side = link.client if kind == "client" else link.upstream
                        self._service(link, side, events)
                self._run_commands()
        except BaseException as exc:  # reported to the controlling thread, then re-raised
            self.error = exc
            self._drain_commands()
            raise

    def _run_commands(self) -> None:
        with contextlib.suppress(OSError):
            while self._wake_r.recv(4096):
                pass
        while True:
            try:
                fn, done = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                fn()
            finally:
                done.set()

    def _drain_commands(self) -> None:
        while True:
            try:
                _, done = self._commands.get_nowait()
            except queue.Empty:
                return
            done.set()

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        for attempt in range(50):  # the old socket's port may take a moment to come free
            try:
                listener.bind((self.host, self.port))
                break
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or attempt == 49:
                    listener.close()
                    raise
                time.sleep(0.1)
        listener.listen(128)
        listener.setblocking(False)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._selector.register(listener, selectors.EVENT_READ, ("listen", None))

    def _switch(self, mode: str) -> None:
        if mode == self.mode:
            return
        now = time.time()
        if self.mode != PASS:  # an outage ends
            self.stats.outages.append((self.mode, self._outage_start, now))
        if self.mode == REFUSE:
            self._listen()
        self.mode = mode
        if mode != PASS:
            self._outage_start = now
        if mode == REFUSE:
            if self._listener is not None:
                self._selector.unregister(self._listener)
                self._listener.close()
                self._listener = None
            for link in list(self._links):
                self.stats.reset += 1
                self._close(link, reset=True)
        elif mode == BLACKHOLE:
            self.stats.held_at_blackhole += len(self._links)
        for link in list(self._links):
            if mode == PASS and link.upstream.sock is None:
                self._connect_upstream(link)
            self._update(link)

    def _shutdown(self) -> None:
        self._stopping = True
        if self._listener is not None:
            self._selector.unregister(self._listener)
            self._listener.close()
            self._listener = None
        for link in list(self._links):
            self._close(link, reset=True)

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                client, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link = _Link(client)
            self._links.append(link)
            self.stats.accepted += 1
            if self.mode == BLACKHOLE:
                self.stats.accepted_in_blackhole += 1
            else:
                self._connect_upstream(link)
            if not link.closed:
                self._update(link)

    def _connect_upstream(self, link: _Link) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            self.stats.upstream_failures += 1
            self._close(link, reset=True)
            return
        upstream.setblocking(False)
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link.upstream.sock = upstream

    def _update(self, link: _Link) -> None:
        """Register each socket of ``link`` for what it may do in the current mode."""
        for side in link.sides():
            if side.sock is None:
                continue
            events = 0
            if self.mode == PASS:
                other = link.other(side)
                if (not side.read_closed and other.sock is not None
                        and len(other.outbox) < HIGH_WATER):
                    events |= selectors.EVENT_READ
                if side.outbox:
                    events |= selectors.EVENT_WRITE
            kind = "client" if side is link.client else "upstream"
            registered = self._is_registered(side.sock)
            if events and registered:
                self._selector.modify(side.sock, events, (kind, link))
            elif events:
                self._selector.register(side.sock, events, (kind, link))
            elif registered:
                self._selector.unregister(side.sock)

    def _is_registered(self, sock: socket.socket) -> bool:
        try:
            self._selector.get_key(sock)
        except (KeyError, ValueError):
            return False
        return True

    def _service(self, link: _Link, side: _Side, events: int) -> None:
        if self.mode != PASS:  # held: a blackhole began after select() returned
            self._update(link)
            return
        other = link.other(side)
        assert side.sock is not None
        if events & selectors.EVENT_READ:
            try:
                data = side.sock.recv(CHUNK)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:
                self._close(link, reset=True)
                return
            if data is not None:
                if not data:
                    side.read_closed = True
                else:
                    other.outbox += data
                    if side is link.client:
                        self.stats.bytes_up += len(data)
                    else:
                        self.stats.bytes_down += len(data)
                    self._flush(link, other)
                    if link.closed:
                        return
        if events & selectors.EVENT_WRITE:
            self._flush(link, side)
            if link.closed:
                return
        if side.read_closed and not side.outbox and not other.outbox:
            self._close(link, reset=False)  # a clean close is passed on as one
            return
        self._update(link)

    def _flush(self, link: _Link, side: _Side) -> None:
        if not side.outbox or side.sock is None:
            return
        try:
            sent = side.sock.send(side.outbox)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(link, reset=True)
            return
        del side.outbox[:sent]

    def _close(self, link: _Link, *, reset: bool) -> None:
        if link.closed:
            return
        link.closed = True
        for side in link.sides():
            if side.sock is not None and self._is_registered(side.sock):
                self._selector.unregister(side.sock)
            if reset:
                _reset(side.sock)
            elif side.sock is not None:
                with contextlib.suppress(OSError):
                    side.sock.close()
        with contextlib.suppress(ValueError):
            self._links.remove(link)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
