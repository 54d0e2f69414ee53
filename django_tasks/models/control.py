from __future__ import annotations

from django.db import models


class ControlRequest(models.Model):
    """A signed command to the workers (``taskinspect``, ``taskcontrol``, a terminating
    revoke); read by each worker's supervisor, pruned after a short time."""

    nonce = models.CharField(max_length=32, unique=True)
    #: The signed JSON: id, command, arguments, destination, the time it was sent.
    payload = models.TextField()
    signature = models.CharField(max_length=64)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name = "control request"

    def __str__(self) -> str:
        return self.nonce


class ControlReply(models.Model):
    """One worker's signed answer to a :class:`ControlRequest`."""

    nonce = models.CharField(max_length=32, db_index=True)  # the request's
    hostname = models.CharField(max_length=255)
    payload = models.TextField()
    signature = models.CharField(max_length=64)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name = "control reply"

    def __str__(self) -> str:
        return f"{self.hostname}: {self.nonce}"
