"""The Redis broker's own path for its scripts (``redis_lane.Lane``): connections reused,
a lost one replaced once, a script Redis forgot loaded again, a forked child on its own."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest
import redis

from django_tasks.brokers.redis import RedisBroker, RedisUnreachable
from django_tasks.brokers.redis_lane import Lane
from django_tasks.message import Message

from .conftest import REDIS_TEST_URL, flushed_redis


@pytest.fixture
def broker() -> Iterator[RedisBroker]:
    yield from flushed_redis()


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_TEST_URL, decode_responses=True)
    yield client
    client.close()


def connection_ids(client: redis.Redis) -> set[int]:
    """The connections to the test database (other clients of this Redis are left alone)."""
    db = client.connection_pool.connection_kwargs["db"]
    return {int(c["id"]) for c in client.client_list() if int(c["db"]) == db}


def test_one_thread_reuses_one_connection(broker: RedisBroker, client: redis.Redis) -> None:
    before = connection_ids(client)
    for i in range(20):
        broker.publish([Message(id=f"m{i}", task="t")])
    assert broker.depths() == {"default": 20}
    assert len(connection_ids(client) - before) == 1


def test_threads_at_once_take_a_connection_each_and_give_it_back(
        broker: RedisBroker, client: redis.Redis) -> None:
    before = connection_ids(client)
    start = threading.Barrier(4)

    def publish(n: int) -> None:
        start.wait()
        for i in range(50):
            broker.publish([Message(id=f"t{n}-{i}", task="t")])

    threads = [threading.Thread(target=publish, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert broker.depths() == {"default": 200}
    assert 1 <= len(connection_ids(client) - before) <= 4
    assert len(broker._lane._free) == len(connection_ids(client) - before)


def test_a_connection_the_server_dropped_is_replaced_once(
        broker: RedisBroker, client: redis.Redis) -> None:
    before = connection_ids(client)
    broker.publish([Message(id="a", task="t")])
    (lane,) = connection_ids(client) - before
    client.client_kill_filter(_id=str(lane))
    broker.publish([Message(id="b", task="t")])
    assert broker.depths() == {"default": 2}


def test_a_script_redis_forgot_is_loaded_again(broker: RedisBroker,
                                                client: redis.Redis) -> None:
    broker.publish([Message(id="a", task="t")])
    client.script_flush()
    broker.publish([Message(id="b", task="t")])
    assert [d.task_id for d in broker.fetch(["default"], "w", 5, 30)] == ["a", "b"]


def test_a_script_error_is_raised_and_the_connection_kept(broker: RedisBroker) -> None:
    failing = broker._client.register_script("return redis.error_reply('no such thing')")
    with pytest.raises(redis.ResponseError, match="no such thing"):
        broker._lane.call(failing, [])
    assert len(broker._lane._free) == 1
    assert broker.ping() is True


def test_redis_down_fails_fast_with_the_broker_error() -> None:
    from .test_redis_broker import closed_port

    broker = RedisBroker(f"redis://:pw@127.0.0.1:{closed_port()}/0")
    with pytest.raises(RedisUnreachable) as failed:
        broker.publish([Message(id="a", task="t")])
    assert "pw" not in str(failed.value)
    assert broker._lane._free == []


def test_close_disconnects_and_the_next_call_connects_again(
        broker: RedisBroker, client: redis.Redis) -> None:
    broker.publish([Message(id="a", task="t")])
    mine = connection_ids(client)
    broker.close()
    assert not any(c._sock for c in broker._lane._made)
    broker.publish([Message(id="b", task="t")])
    assert broker.depths() == {"default": 2}
    assert connection_ids(client) != mine


def test_a_forked_child_uses_connections_of_its_own(broker: RedisBroker) -> None:
    broker.publish([Message(id="parent", task="t")])
    (parent_connection,) = broker._lane._free
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: publish on its own connection, report, leave at once
        code = 1
        try:
            broker.publish([Message(id="child", task="t")])
            code = 0 if broker._lane._free[0] is not parent_connection else 2
        finally:
            os.write(write, bytes([code]))
            os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"\x00"
    os.waitpid(pid, 0)
    os.close(read)
    # The parent's connection is untouched by the child: it is still usable here.
    broker.publish([Message(id="after", task="t")])
    assert broker._lane._free == [parent_connection]
    assert broker.depths() == {"default": 3}


def test_a_lane_made_for_a_pool_uses_the_pools_settings() -> None:
    pool = redis.ConnectionPool.from_url(REDIS_TEST_URL, decode_responses=True,
                                         socket_timeout=1.5)
    lane = Lane(pool)
    script = redis.Redis(connection_pool=pool).register_script("return ARGV[1]")
    assert lane.call(script, ["hello"]) == "hello"
    (connection,) = lane._free
    assert connection.socket_timeout == 1.5
    lane.close()


def test_a_started_call_is_read_later_and_its_connection_given_back(
        broker: RedisBroker) -> None:
    echo = broker._client.register_script("return ARGV[1]")
    broker._lane.call(echo, ["warm"])  # loaded: the started calls' EVALSHA finds it
    first = broker._lane.start(echo, ["one"])
    second = broker._lane.start(echo, ["two"])  # the first still holds its connection
    assert broker._lane._free == []
    assert (second(), first()) == ("two", "one")
    assert len(broker._lane._free) == 2


def test_a_started_call_of_a_script_redis_forgot_is_loaded_and_sent_again(
        broker: RedisBroker, client: redis.Redis) -> None:
    echo = broker._client.register_script("return ARGV[1]")
    broker._lane.call(echo, ["warm"])
    client.script_flush()
    assert broker._lane.start(echo, ["again"])() == "again"


def test_a_started_call_on_a_connection_the_server_dropped_is_sent_again(
        broker: RedisBroker, client: redis.Redis) -> None:
    echo = broker._client.register_script("return ARGV[1]")
    before = connection_ids(client)
    broker._lane.call(echo, ["warm"])
    (lane,) = connection_ids(client) - before
    client.client_kill_filter(_id=str(lane))
    # The send or the read finds the connection gone; the call is made again once.
    assert broker._lane.start(echo, ["back"])() == "back"
    assert len(broker._lane._free) == 1


def test_a_started_publish_queues_its_messages_when_ended(broker: RedisBroker) -> None:
    end = broker.start_publish([Message(id=f"m{i}", task="t") for i in range(3)])
    end()
    assert broker.depths() == {"default": 3}
    assert broker.start_publish([])() is None


def test_a_started_publish_to_a_redis_that_is_down_fails_when_ended() -> None:
    from .test_redis_broker import closed_port

    broker = RedisBroker(f"redis://:pw@127.0.0.1:{closed_port()}/0")
    with pytest.raises(RedisUnreachable) as failed:
        broker.start_publish([Message(id="a", task="t")])()
    assert "pw" not in str(failed.value)
    assert broker._lane._free == []


# -- looking for the reply before sleeping -------------------------------------------------

SLOW = """
local start = redis.call('TIME')
repeat
  local now = redis.call('TIME')
until (now[1] - start[1]) * 1000000 + (now[2] - start[2]) > tonumber(ARGV[1])
return 'slow'
"""


def test_a_lane_looks_while_replies_come_within_its_spin_and_sleeps_once_one_does_not(
        broker: RedisBroker) -> None:
    lane = Lane(broker._client.connection_pool, spin=0.05)  # generous: a busy machine
    slow = broker._client.register_script(SLOW)
    echo = broker._client.register_script("return ARGV[1]")
    assert lane._spinning
    assert lane.call(echo, ["quick"], look=True) == "quick"
    assert lane.call(slow, [0], look=True) == "slow"  # loaded: the next call runs it at once
    assert lane._spinning
    # 0.2 s: the look gives up, the read sleeps.
    assert lane.call(slow, [200_000], look=True) == "slow"
    assert not lane._spinning
    assert lane.call(echo, ["timed"], look=True) == "timed"  # slept, but came within 50 ms
    assert lane._spinning
    lane.close()


def test_a_look_finds_a_reply_without_reading_it_and_gives_up_after_its_spin(
        broker: RedisBroker) -> None:
    from django_tasks.brokers.redis_lane import _looked

    connection = broker._client.connection_pool.make_connection()
    connection.connect()
    sock = connection._sock
    timeout = sock.gettimeout()
    assert _looked(sock, 0.001) is False  # nothing asked, nothing comes
    connection.send_command("PING")
    assert _looked(sock, 1.0) is True
    assert _looked(sock, 0.001) is True  # still there: a look reads nothing
    assert connection.read_response() in ("PONG", b"PONG", True)
    assert sock.gettimeout() == timeout
    connection.disconnect()


def test_a_lane_with_no_spin_never_looks(broker: RedisBroker,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from django_tasks.brokers import redis_lane

    def looked(*args: object) -> bool:
        raise AssertionError("looked")

    monkeypatch.setattr(redis_lane, "_looked", looked)
    lane = Lane(broker._client.connection_pool, spin=0)
    echo = broker._client.register_script("return ARGV[1]")
    assert [lane.call(echo, [str(i)], look=True) for i in range(3)] == ["0", "1", "2"]
    assert lane.start(echo, ["started"], look=True)() == "started"
    assert not lane._spinning
    lane.close()


def test_only_publishes_look_for_their_reply(broker: RedisBroker,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from django_tasks.brokers import redis_lane

    looks: list[float] = []

    def looked(sock: object, spin: float) -> bool:
        looks.append(spin)
        return True

    monkeypatch.setattr(redis_lane, "_looked", looked)
    broker.publish([Message(id="a", task="t")])
    broker.start_publish([Message(id="b", task="t")])()
    assert looks == [redis_lane.SPIN_SECONDS] * 2
    # A worker's calls sleep: in a drain that keeps the CPUs busy, looking slows it down.
    deliveries = broker.fetch(["default"], "w", 5, 30)
    assert broker.ack(deliveries) == deliveries
    assert broker.depths() == {}
    assert len(looks) == 2


def test_the_url_sets_how_long_a_call_looks_for_its_reply() -> None:
    assert RedisBroker("redis://127.0.0.1:6379/13?spin_us=250")._lane._spin == 0.00025
    assert RedisBroker("redis://127.0.0.1:6379/13?spin_us=0")._lane._spinning is False
    assert RedisBroker("redis://127.0.0.1:6379/13")._lane._spin == 0.0001
