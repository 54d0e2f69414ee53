"""The Redis broker (``redis://``, ``rediss://``): reliable queues with leases, on redis-py.

URL: ``redis://[:password@]host:port/db`` (``rediss://`` for TLS), read by redis-py's
``Redis.from_url``; the query option ``prefix=NAME`` (default ``tasks``) starts every key, so
several projects can share one database, and ``spin_us=N`` (default 100) is how long a
publish looks for its reply before it sleeps until it comes (``redis_lane``; 0: never
looks). Redis Cluster is not supported: the scripts build their key names from the prefix.

Key layout (``P`` is the prefix)::

    P:seq                 INCR counter: the tag of each new message (Delivery.tag)
    P:m:<tag>             hash: b body, q queue, p priority, id task id, d deliveries,
                          r runs; o owner and t token while leased
    P:ready:<queue>       ZSET of tags due now, scored (255 - priority) * 2**40 + tag:
                          higher priority first, then publish order
    P:delayed:<queue>     ZSET of tags not due yet, scored by their eta (Unix seconds)
    P:leased:<queue>      ZSET of leased tags, scored by the end of their lease
    P:owner:<owner>       SET of the tags an owner (one consuming process) holds
    P:last:<owner>        the owner's last fetch that leased anything: its token base and
                          the tags, for a minute (a fetch sent again answers with them)
    P:queues              SET of queue names with messages, for ``depths()`` and
                          ``queue_counts()``
    P:once:<key>          a published outbox row (``publish_once``), kept for a day
    P:wake:<queue>        LIST of wake-up tokens, one per due message published (at most
                          32 kept): an idle consumer waits for one with BLPOP
    P:rate:<task>@<int>   a rate-limited task's bucket at one rate (its interval): when its
                          next slot is free

A message is in exactly one of its queue's three ZSETs. A message released, or whose lease
ran out, goes back to ``ready`` under its old tag, so ahead of messages published after it.

Atomicity: every change that touches more than one key is one Lua script
(``redis_lua.py``), and a batch (``publish``, ``ack``, ``release``, ``confirm``) is one
script call, or one pipeline of script calls for very large batches. ``fetch`` first moves
its queues' due delayed messages and run-out leases to ``ready`` (whoever fetches first
moves each exactly once, at most 1,000 of each kind per queue and call; a run-out lease keeps
its delivery count), then leases the best ``limit`` across the queues, each with a new token.

Clock: "now" is read from ``django_tasks.clock`` on the client and passed to the scripts
(never Redis ``TIME``), so a test clock drives this broker as it drives the others. Lease
ends and etas are therefore compared with the clocks of the hosts that publish and fetch:
keep workers' clocks in agreement (NTP) to well within a small fraction of
``TASKS_LEASE_SECONDS``; a worker whose clock runs ahead takes over leases early.

Failures: connecting and each command are bounded by timeouts and one quick retry, so an
operation while Redis is down fails within seconds with :class:`RedisUnreachable`, whose
message names the URL with its password hidden. A retried script may run twice (its reply
was lost): a message may then be published twice, which at-least-once delivery allows. A
fetch run twice answers with what its first run leased (``FETCH`` knows its token base); one
whose answer never comes is undone by the consumer's next fetch (``release_owner``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.commands.core import Script
from redis.retry import Retry

from .. import clock
from ..exceptions import BrokerUnreachable, ConfigurationError
from ..message import MAX_WIRE_PRIORITY, Message
from . import redis_lua
from .base import Broker, Capabilities, Delivery, PendingFetch, Purged, QueueCounts
from .buckets import RateBuckets
from .redis_lane import SPIN_SECONDS, Lane, Reply

DEFAULT_PREFIX = "tasks"
CONNECT_TIMEOUT = 2.0
SOCKET_TIMEOUT = 5.0
HEALTH_CHECK_INTERVAL = 15
#: How long a ``publish_once`` key is remembered: far longer than an outbox claim.
ONCE_SECONDS = 86400
# Messages (or deliveries) per script call; a larger batch is several calls in one pipeline.
_CHUNK = 1000
#: Messages one fetch leases at most (the slot takes four digits of each token).
MAX_FETCH = 9999
#: The URL's own query options, taken out before the rest goes to redis-py.
_OPTIONS = ("prefix", "spin_us")
#: The longest ``spin_us`` taken: a call that looks longer burns a CPU for little.
MAX_SPIN_US = 10_000


class RedisUnreachable(BrokerUnreachable, ConnectionError):
    """The Redis broker did not answer (down, unreachable, or too slow).

    Check that Redis runs and that ``TASKS_BROKER_URL`` names its host, port, database and
    password; a worker keeps trying on its next fetch.
    """


def _now() -> dt.datetime:
    return clock.now()


def _time() -> float:
    """Now, in Unix seconds: what the scripts compare etas and lease ends with."""
    return _now().timestamp()


def _split_url(url: str) -> tuple[str, str, float]:
    """``url`` without our query options (``prefix``, ``spin_us``); the prefix, and how long
    a publish looks for its reply before it sleeps (``redis_lane.Lane``), in seconds."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = {key: value for key, value in query if key in _OPTIONS}
    prefix = ours.get("prefix") or DEFAULT_PREFIX
    text = ours.get("spin_us")
    if text and (not text.isdigit() or int(text) > MAX_SPIN_US):
        raise ConfigurationError(f"TASKS_BROKER_URL: spin_us= must be a whole number of "
                                 f"microseconds from 0 to {MAX_SPIN_US}, not {text!r}.")
    rest = urlencode([(key, value) for key, value in query if key not in _OPTIONS])
    spin = int(text) / 1e6 if text else SPIN_SECONDS
    return urlunsplit(parts._replace(query=rest)), prefix, spin


def _token_base() -> str:
    """A fetch's token base: random, so that no two claims of one message share a token
    (their tokens below 2**63, as every broker's are)."""
    return str(secrets.randbits(48) + 1)


def _message_args(message: Message, visible_at: float) -> list[Any]:
    priority = min(max(int(message.priority), 0), MAX_WIRE_PRIORITY)
    return [message.queue, priority, message.id, message.encode(), repr(visible_at)]


def _publish_fields(messages: Sequence[Message], now: float) -> list[Any]:
    return [field for m in messages
            for field in _message_args(m, m.eta.timestamp() if m.eta else now)]


def _fenced(deliveries: Iterable[Delivery]) -> list[Any]:
    """Tag, token pairs, flattened for a script."""
    return [field for d in deliveries for field in (d.tag, str(d.token))]


def _fetch_args(queues: Sequence[str], owner: str, limit: int, lease: float, now: float
                ) -> list[Any]:
    """FETCH's arguments after the prefix: one random base per call; each lease's token is
    it and the slot (see FETCH)."""
    return [repr(now), repr(now + lease), owner, min(limit, MAX_FETCH), len(queues),
            *queues, _token_base()]


def _deliveries(rows: Sequence[Sequence[Any]], owner: str, leased_until: float
                ) -> list[Delivery]:
    """FETCH's reply as deliveries."""
    return [Delivery(tag=int(tag), body=body, queue=queue, deliveries=int(deliveries),
                     owner=owner, task_id=task_id or "", token=int(token),
                     runs=int(runs or 0), leased_until=leased_until)
            for tag, body, queue, deliveries, task_id, token, runs in rows]


class _PendingFetch:
    """A FETCH sent on a lane connection; its reply read by ``result()``."""

    def __init__(self, broker: RedisBroker, reply: Reply, owner: str, leased_until: float
                 ) -> None:
        self._broker, self._reply = broker, reply
        self._owner, self._leased_until = owner, leased_until

    def ready(self) -> bool:
        return self._reply.ready()

    def result(self) -> list[Delivery]:
        with self._broker._errors():
            rows = self._reply()
        return _deliveries(rows, self._owner, self._leased_until)


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class RedisBroker(Broker):
    capabilities = Capabilities(leases=True, native_delays=True, delivery_counts=True,
                                priorities=True, transactional=False, broadcast=False,
                                pipelined=True)

    #: Redis ends a blocked command whose timeout passed on its clock tick: ``hz`` 10 (the
    #: default) makes a ``BLPOP`` up to 0.1 s late.
    wait_lateness = 0.11

    def __init__(self, url: str = "redis://127.0.0.1:6379/0") -> None:
        super().__init__(url)
        client_url, self.prefix, spin = _split_url(url)
        self._password = urlsplit(url).password or ""
        self._client: redis.Redis = redis.Redis.from_url(
            client_url,
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=SOCKET_TIMEOUT,
            health_check_interval=HEALTH_CHECK_INTERVAL,
            retry=Retry(ExponentialBackoff(cap=0.25, base=0.05), retries=1),
            decode_responses=True,
        )
        self._lane = Lane(self._client.connection_pool, spin)
        register = self._client.register_script
        self._publish = register(redis_lua.PUBLISH)
        self._publish_one = register(redis_lua.PUBLISH_ONE)
        self._publish_once = register(redis_lua.PUBLISH_ONCE)
        self._fetch = register(redis_lua.FETCH)
        self._next_due = register(redis_lua.NEXT_DUE)
        self._ack = register(redis_lua.ACK)
        self._release = register(redis_lua.RELEASE)
        self._release_owner = register(redis_lua.RELEASE_OWNER)
        self._record_start = register(redis_lua.RECORD_START)
        self._requeue = register(redis_lua.REQUEUE)
        self._defer = register(redis_lua.DEFER)
        self._buckets = RedisBuckets(self)
        self._renew = register(redis_lua.RENEW)
        self._confirm = register(redis_lua.CONFIRM)
        self._depths = register(redis_lua.DEPTHS)
        self._queue_counts = register(redis_lua.QUEUE_COUNTS)
        self._purge = register(redis_lua.PURGE)

    # -- plumbing ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn redis-py's connection errors into one that names the (masked) URL."""
        try:
            yield
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            if self._password:
                reason = reason.replace(self._password, "**")
            raise RedisUnreachable(
                f"Cannot reach the Redis broker at {self.describe()} "
                f"({type(exc).__name__}: {reason})") from None

    def _run(self, script: Script, args: Sequence[Any]) -> Any:
        with self._errors():
            return self._lane.call(script, [self.prefix, *args])

    def _run_chunks(self, script: Script, head: Sequence[Any], items: Sequence[Any],
                    width: int, *, look: bool = False) -> list[Any]:
        """Call ``script`` once per chunk of ``items`` (``width`` fields each), all in one
        round trip; return each call's reply (``look``: see ``redis_lane``)."""
        chunks = list(_chunks(items, _CHUNK * width))
        with self._errors():
            if len(chunks) == 1:
                return [self._lane.call(script, [self.prefix, *head, *chunks[0]], look=look)]
            pipe = self._client.pipeline(transaction=False)
            for chunk in chunks:
                script(args=[self.prefix, *head, *chunk], client=pipe)
            return list(pipe.execute())

    def ping(self) -> bool:
        """True if Redis answers; raises :class:`RedisUnreachable` if it does not."""
        with self._errors():
            return bool(self._client.ping())

    # -- publishing ----------------------------------------------------------------------

    def publish(self, messages: Sequence[Message]) -> None:
        if not messages:
            return
        now = _time()
        # The caller (``delay()``) waits for the answer: it looks for it (``redis_lane``).
        script = self._publish_one if len(messages) == 1 else self._publish
        self._run_chunks(script, [repr(now)], _publish_fields(messages, now), 5, look=True)

    def start_publish(self, messages: Sequence[Message]) -> Callable[[], None]:
        """One script call's worth (``_CHUNK`` messages) is sent and its reply read by the
        function returned; more are published at once."""
        if not messages or len(messages) > _CHUNK:
            return super().start_publish(messages)
        now = _time()
        script = self._publish_one if len(messages) == 1 else self._publish
        with self._errors():
            reply = self._lane.start(script, [self.prefix, repr(now),
                                              *_publish_fields(messages, now)], look=True)

        def end() -> None:
            with self._errors():
                reply()
        return end

    def publish_once(self, keyed: Sequence[tuple[str, Message]]) -> None:
        """Queue each message whose key Redis has not seen in the last ``ONCE_SECONDS``;
        the key is set in the same script that queues the message."""
        if not keyed:
            return
        now = _time()
        fields = [field for key, m in keyed
                  for field in (key, *_message_args(m, m.eta.timestamp() if m.eta else now))]
        self._run_chunks(self._publish_once, [repr(now), ONCE_SECONDS], fields, 6)

    # -- claiming ------------------------------------------------------------------------

    def fetch(self, queues: Sequence[str], owner: str, limit: int, lease: float, *,
              look: str | None = None) -> list[Delivery]:
        if limit <= 0 or not queues:
            return []
        now = _time()
        rows = self._run(self._fetch, _fetch_args(queues, owner, limit, lease, now))
        return _deliveries(rows, owner, now + lease)

    def start_fetch(self, queues: Sequence[str], owner: str, limit: int, lease: float, *,
                    look: str | None = None) -> PendingFetch:
        """The ``EVALSHA`` is sent now; the deliveries are read when asked for."""
        if limit <= 0 or not queues:
            return super().start_fetch(queues, owner, limit, lease)
        now = _time()
        with self._errors():
            reply = self._lane.start(self._fetch, [
                self.prefix, *_fetch_args(queues, owner, limit, lease, now)])
        return _PendingFetch(self, reply, owner, now + lease)

    def wait(self, queues: Sequence[str], timeout: float, *,
             accept: Callable[[str], bool] | None = None) -> bool | None:
        """Block (BLPOP) until a due message, or a delayed one due within a second, is
        published to one of ``queues``, at most ``timeout`` seconds; True when woken."""
        if not queues:
            return False
        keys = [f"{self.prefix}:wake:{queue}" for queue in queues]
        with self._errors():
            return self._client.blpop(keys, timeout=max(timeout, 0.01)) is not None

    def next_due(self, queues: Sequence[str], since: dt.datetime) -> float | None:
        """One script reads the head of each queue's delayed and leased sets."""
        if not queues:
            return None
        reply = self._run(self._next_due, [repr(since.timestamp()), *queues])
        return None if reply is None else float(reply) - _time()

    # -- settling: every write is fenced by the delivery's (tag, token) --------------------

    def ack(self, deliveries: Iterable[Delivery]) -> list[Delivery]:
        batch = list(deliveries)
        if not batch:
            return []
        replies = self._run_chunks(self._ack, [], _fenced(batch), 2)
        acked = {int(tag) for reply in replies for tag in reply}
        return [d for d in batch if d.tag in acked]

    def start_ack(self, deliveries: Sequence[Delivery]) -> Callable[[], list[Delivery]]:
        """One script call's worth (``_CHUNK`` messages) is sent and its answer read by the
        function returned; more are acked at once."""
        batch = list(deliveries)
        if not batch or len(batch) > _CHUNK:
            return super().start_ack(batch)
        with self._errors():
            reply = self._lane.start(self._ack, [self.prefix, *_fenced(batch)])

        def end() -> list[Delivery]:
            with self._errors():
                acked = {int(tag) for tag in reply()}
            return [d for d in batch if d.tag in acked]
        return end

    def release(self, deliveries: Iterable[Delivery], *, count: bool = False) -> int:
        batch = list(deliveries)
        if not batch:
            return 0
        replies = self._run_chunks(self._release, [int(count)], _fenced(batch), 2)
        return sum(int(n) for n in replies)

    def release_owner(self, owner: str, *, keep_count: Iterable[int] = (),
                      count_all: bool = False, died_running: Iterable[int] = ()) -> int:
        keep, died = list(keep_count), list(died_running)
        return int(self._run(self._release_owner,
                             [owner, int(count_all), len(keep), *keep, *died]))

    def record_start(self, delivery: Delivery) -> bool:
        return bool(self._run(self._record_start, [delivery.tag, str(delivery.token)]))

    def requeue(self, delivery: Delivery, message: Message, delay: float) -> bool:
        now = _time()
        return bool(self._run(self._requeue, [repr(now), delivery.tag, str(delivery.token),
                                              *_message_args(message, now + max(delay, 0))]))

    def defer(self, delivery: Delivery, message: Message, delay: float) -> bool:
        eta = repr(_time() + max(delay, 0))
        return bool(self._run(self._defer, [eta, delivery.tag, str(delivery.token),
                                            message.encode()]))

    def rate_buckets(self) -> RateBuckets:
        return self._buckets

    def renew(self, owners: Sequence[str], lease: float) -> int:
        if not owners:
            return 0
        return int(self._run(self._renew, [repr(_time() + lease), *owners]))

    def confirm(self, deliveries: Sequence[Delivery], lease: float) -> list[Delivery]:
        """Leases this process took less than half a lease ago are current without asking:
        another worker claims a message only once its lease has run out by its own clock,
        so not before then unless the clocks differ by half a lease or more. The others
        are confirmed, and extended, by one script."""
        now = _time()
        fresh = {d.tag for d in deliveries if now < d.leased_until - lease / 2}
        asked = [d for d in deliveries if d.tag not in fresh]
        if not asked:
            return list(deliveries)
        until = repr(now + lease)
        replies = self._run_chunks(self._confirm, [until], _fenced(asked), 2)
        current = fresh | {int(tag) for reply in replies for tag in reply}
        return [d for d in deliveries if d.tag in current]

    # -- inspection ----------------------------------------------------------------------

    def depths(self, queues: Sequence[str] | None = None) -> dict[str, int]:
        if queues is not None and not queues:
            return {}
        reply = self._run(self._depths, list(queues or ()))
        return {reply[i]: int(reply[i + 1]) for i in range(0, len(reply), 2)}

    def queue_counts(self, queues: Sequence[str] = ()) -> dict[str, QueueCounts]:
        """One script: atomic counts of the queues' three sorted sets."""
        reply = self._run(self._queue_counts, [repr(_time()), *queues])
        return {reply[i]: QueueCounts(int(reply[i + 1]), int(reply[i + 2]), int(reply[i + 3]))
                for i in range(0, len(reply), 4)}

    def purge(self, queue: str) -> Purged:
        task_ids = tuple(str(i) for i in self._run(self._purge, [queue]))
        return Purged(len(task_ids), task_ids)

    def close(self) -> None:
        """Drop the pool's connections (after ``fork``: the child opens its own)."""
        self._lane.close()
        self._client.connection_pool.disconnect()


class RedisBuckets(RateBuckets):
    """Rate-limit buckets as Redis keys, each taken by one Lua script (atomic)."""

    def __init__(self, broker: RedisBroker) -> None:
        self.broker = broker
        self._reserve = broker._client.register_script(redis_lua.RESERVE)

    def reserve(self, key: str, interval: float, now: float) -> float:
        return float(self.broker._run(self._reserve, [key, repr(interval), repr(now)]))

    def reset(self, key: str) -> None:
        with self.broker._errors():
            self.broker._client.delete(f"{self.broker.prefix}:rate:{key}")
