"""HMAC-SHA256 over a control message's JSON text, under a key derived from ``SECRET_KEY``
(and each of ``SECRET_KEY_FALLBACKS`` when checking, so that a key can be rotated)."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.utils.crypto import salted_hmac

#: Fixed salt: the key is derived for this use only, never ``SECRET_KEY`` itself.
SALT = "django_tasks.control"


def sign(payload: str, secret: str | None = None) -> str:
    return salted_hmac(SALT, payload, secret=secret, algorithm="sha256").hexdigest()


def verify(payload: str, signature: str) -> bool:
    """Whether ``signature`` is ``payload``'s under the current key or a fallback one."""
    if not signature:
        return False
    secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return any(hmac.compare_digest(sign(payload, secret), signature) for secret in secrets)
