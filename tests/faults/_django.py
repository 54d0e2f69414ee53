"""Django set up for ``python -m tests.faults``, as pytest-django does for the suite: the
runner builds some messages itself (the bad rows' envelopes), and building one reads the
project's settings (the masking of sensitive arguments)."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")
django.setup()
