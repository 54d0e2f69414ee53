"""Transports. Pick one with ``TASKS_BROKER_URL``; see ``base.Broker`` for the contract."""

from .base import Broker, Delivery

__all__ = ["Broker", "Delivery"]
