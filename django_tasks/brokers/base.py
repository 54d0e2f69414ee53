"""The broker contract, small enough to read in one screen.

A broker moves encoded messages between producers and workers, with leases:

* ``publish`` puts messages on their queues; those with an ``eta`` stay invisible until due.
* ``fetch`` leases up to ``limit`` due messages to ``owner`` (one consuming process) for
  ``lease`` seconds and raises each one's delivery count.
* ``renew`` extends every lease an owner holds; a lease runs out only when its owner stops
  renewing (killed, frozen, cut off), and the message is then delivered again.
* ``ack`` removes finished messages; ``release`` hands messages back at once (optionally
  without counting the delivery); ``requeue`` hands one back after a delay.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..message import Message


@dataclass(frozen=True, slots=True)
class Delivery:
    """One leased message: ``tag`` identifies it to the broker, ``body`` is the envelope.

    ``task_id`` is the id the broker stored beside the body, where it keeps one: it lets the
    worker record a FAILURE for a body that does not decode.
    """

    tag: object
    body: str
    queue: str
    deliveries: int
    owner: str
    task_id: str = ""


class Broker(abc.ABC):
    #: Publishing happens inside the caller's database transaction (``django://``).
    transactional: bool = False
    #: The database alias such a broker writes to.
    database_alias: str = "default"

    def __init__(self, url: str) -> None:
        self.url = url

    @abc.abstractmethod
    def publish(self, messages: Sequence[Message]) -> None: ...

    @abc.abstractmethod
    def fetch(self, queues: Sequence[str], owner: str, limit: int,
              lease: float) -> list[Delivery]: ...

    @abc.abstractmethod
    def ack(self, deliveries: Iterable[Delivery]) -> None: ...

    @abc.abstractmethod
    def release(self, deliveries: Iterable[Delivery], *, count: bool = False) -> None:
        """Make these messages deliverable now; ``count=False`` undoes their delivery count."""

    @abc.abstractmethod
    def release_owner(self, owner: str, *, keep_count: Iterable[object] = ()) -> int:
        """Release everything ``owner`` holds (it died or stopped); return how many.

        Deliveries whose tag is in ``keep_count`` keep their count (they were running).
        """

    @abc.abstractmethod
    def requeue(self, delivery: Delivery, message: Message, delay: float) -> None:
        """Replace the delivered message with ``message``, deliverable after ``delay`` s."""

    @abc.abstractmethod
    def renew(self, owners: Sequence[str], lease: float) -> int: ...

    @abc.abstractmethod
    def depths(self, queues: Sequence[str] | None = None) -> dict[str, int]: ...

    @abc.abstractmethod
    def purge(self, queue: str) -> int: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Drop connections (after ``fork``, at shutdown)."""

    def describe(self) -> str:
        """The URL with any password hidden, for banners and logs."""
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(self.url)
        if parts.password:
            netloc = parts.netloc.replace(f":{parts.password}@", ":**@")
            return urlunsplit(parts._replace(netloc=netloc))
        return self.url
