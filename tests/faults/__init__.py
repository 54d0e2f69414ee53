"""The fault suite: real ``taskworker`` processes killed, frozen, cut off from their database
and fed poison and garbage, with what the delivery contract promises counted afterwards.

- ``proxy.py``: a TCP proxy (standard library) that refuses or black-holes a worker's
  database connections on demand;
- ``harness.py``: supervised workers, faults, the tasks' execution journals, and the figures
  (lost, unexpected, duplicates explained or not, overlaps, recovery, throughput);
- ``scenarios.py``: one function per scenario, taking a Project-like object and a Scale;
- ``report.py``: the table and docs/reliability.md;
- ``test_faults.py``: the CI scale as pytest tests (markers ``e2e`` and ``faults``);
- ``test_harness.py``: the harness and proxy themselves, without workers (marker ``faults``);
- ``__main__.py``: ``python -m tests.faults [--scale full|ci] [--backends ...] [--only ...]
  [--no-docs]``, from scratch, writing docs/reliability.md.

The tasks the scenarios queue are at the end of ``testproject/demo/tasks.py`` (``record``,
``poison``, ``fail_first``): each writes a line to a journal file when it starts and ends.
"""
