"""The fault scenarios: each takes a Project-like object and a Scale and returns one row of
figures per variant it ran (see ``harness.Figures``). Nothing here asserts: a scenario
notes problems in its figures and the caller (pytest or ``python -m tests.faults``) judges.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from .harness import (
    LEASE,
    MAX_DELIVERIES,
    ROOT,
    TASKS,
    Fault,
    Figures,
    ProjectLike,
    Run,
    Scale,
    Stuck,
    Supervised,
    by_task,
    drop_connections,
    exception_type,
    insert_raw,
    new_id,
    read_journal,
    script_command,
    upstream,
    use_broker,
)
from .proxy import Proxy

ALL_BACKENDS = ("sqlite", "postgres", "mysql")
SERVER_BACKENDS = ("postgres", "mysql")  # SQLite has no server to cut off or drop
#: After a drain, how long to watch for late executions before judging.
QUIET = 1.0

Scenario = Callable[[ProjectLike, Scale], list[Figures]]


# -- 1. the kill loop -----------------------------------------------------------------------


#: Brokers the kill loop runs on besides the database (results stay in the database).
OTHER_BROKERS = ("redis", "amqp")


def kill_loop(project: ProjectLike, scale: Scale, broker: str = "database") -> list[Figures]:
    """Two workers drain ``kill_tasks`` short tasks; every ``kill_every`` seconds one of them
    (in turn) has its whole process group SIGKILLed and is started again under its name."""
    c = scale.kill_concurrency
    on = "" if broker == "database" else f", on {broker}"
    run = Run(project, scale, "kill-loop", f"2 workers -c {c}, SIGKILL every "
                                           f"{scale.kill_every:g}s{on}")
    expected: dict[str, str] = {}
    with use_broker(project, broker):
        with run.guarded():
            expected = dict.fromkeys(run.enqueue(scale.kill_tasks, scale.kill_task_seconds),
                                     "SUCCESS")
            workers = [run.worker(name, "-c", str(c), "-P", "prefork", "-l", "warning")
                       for name in ("kill-a", "kill-b")]
            kills: list[float] = []
            next_kill = time.monotonic() + scale.kill_every

            def killer() -> None:
                nonlocal next_kill
                if time.monotonic() >= next_kill and run.queued():
                    workers[len(kills) % 2].kill(restart=True)
                    kills.append(time.time())
                    next_kill = time.monotonic() + scale.kill_every

            run.ticks.append(killer)
            done = run.wait_drained()
            run.ticks.clear()
            run.hold(QUIET)
            if len(kills) < scale.min_kills:
                run.problem(f"only {len(kills)} kills happened before the queue drained (at least "
                            f"{scale.min_kills} wanted): the drain was too quick to test anything")
            if done is not None:
                if kills:
                    run.figures.recovery = max(0.0, done - kills[-1])
                run.figures.throughput = _rate(run, list(expected), until=done)
            run.require_running()
        run.judge(expected)
        return [run.finish()]


# -- 2. poison among innocents --------------------------------------------------------------

POOLS: dict[str, tuple[str, ...]] = {
    "prefork": ("-P", "prefork", "-c", "2"),
    "threads": ("-P", "threads", "-c", "2"),
    "solo": ("-P", "solo"),
}
POISONS = ("os._exit", "sys.exit", "KeyboardInterrupt")
#: Seconds before a poison's os._exit in which a finished task (in its own process, or in
#: another thread of it) may not have had its outcome written yet, so may run again:
#: outcomes are written in batches, and the batch dies with the process.
IN_FLIGHT = 1.0
#: What a poison's FAILURE must record, and how many times it may run. An os._exit in
#: prefork kills one pool process, whose supervisor counts the run; in threads and solo it
#: takes the whole worker with it, so its first run is not known to anyone and the poison
#: limit is reached one run later (docs/explanation/delivery.md, poison messages).
POISON_OUTCOME = {"os._exit": ("WorkerLostError", MAX_DELIVERIES),
                  "sys.exit": ("SystemExit", 1),
                  "KeyboardInterrupt": ("KeyboardInterrupt", 1)}
WHOLE_WORKER_DIES = ("threads", "solo")


def poison(project: ProjectLike, scale: Scale, pools: Sequence[str] = tuple(POOLS),
           poisons: Sequence[str] = POISONS) -> list[Figures]:
    """Poison tasks among ``poison_innocents`` innocent ones, in each pool: one poison per
    run (full), or (CI) ``os._exit`` alone and the two poisons that raise together."""
    sets: list[tuple[str, ...]]
    if scale.poison_one_at_a_time:
        sets = [(how,) for how in poisons]
    else:  # a poison that raises must end as FAILURE at once, so two can share a run
        sets = [tuple(h for h in poisons if h == "os._exit"),
                tuple(h for h in poisons if h != "os._exit")]
    groups = [(pool, hows) for pool in pools for hows in sets if hows]
    return [_poison_run(project, scale, pool, hows) for pool, hows in groups]


def _poison_run(project: ProjectLike, scale: Scale, pool: str,
                hows: tuple[str, ...]) -> Figures:
    run = Run(project, scale, "poison", f"{' + '.join(hows)} in {pool}")
    expected: dict[str, str] = {}
    innocents: list[str] = []
    poisons: dict[str, str] = {}
    sup: Supervised | None = None
    with run.guarded():
        queued = run.script(f"""
            from {TASKS} import poison, record
            journal = {str(run.journal)!r}
            result = {{"innocents": [], "poisons": {{}}}}
            for i in range({scale.poison_innocents}):
                if i == {scale.poison_innocents // 2}:
                    for how in {list(hows)!r}:
                        result["poisons"][how] = poison.delay(journal, how).id
                result["innocents"].append(record.delay(journal).id)
        """)
        innocents, poisons = queued["innocents"], queued["poisons"]
        expected = {**dict.fromkeys(innocents, "SUCCESS"),
                    **dict.fromkeys(poisons.values(), "FAILURE")}
        sup = run.worker(f"poison-{pool}", *POOLS[pool])
        run.wait_drained()
        run.hold(QUIET)
        run.require_running()
    runs = by_task(read_journal(run.journal))
    # A poison's os._exit ends its process: an innocent it cut short in another thread may
    # run again, and so may one that had finished in that process just before (its outcome
    # not written yet). Nothing else a poison does may make an innocent run twice.
    killers = {each.pid: each for each in runs.get(poisons.get("os._exit", ""), [])}
    for pid, each in sorted(killers.items()):
        run.faults.append(Fault("process-death", None, each.start, each.start,
                                pids=frozenset({pid}), interrupted_only=True,
                                thread=each.thread, window=IN_FLIGHT,
                                detail="poison os._exit"))
    # os._exit in a threads or solo worker ends the whole worker, which the harness restarts
    # as a supervisor would: allowed, but only for the process that ran it.
    for gone in sup.exits if sup is not None else []:
        gone.allowed = gone.code == 1 and gone.pid in killers
    run.faults[:] = [replace(f, interrupted_only=True) if f.kind == "death" else f
                     for f in run.faults]
    results = run.judge(expected, innocents=innocents)
    for how, task_id in poisons.items():
        exc_type, runs_allowed = POISON_OUTCOME[how]
        if how == "os._exit" and pool in WHOLE_WORKER_DIES:
            runs_allowed += 1
        row = results.get(task_id)
        executions = runs.get(task_id, [])
        seen = exception_type(row)
        if row is not None and row["state"] == "FAILURE" and seen != exc_type:
            run.problem(f"poison {how} ended FAILURE with {seen}, not {exc_type}: "
                        f"{str(row['result'])[:200]}")
        if len(executions) != runs_allowed:  # a poison that raises: FAILURE on its first run
            run.problem(f"poison {how} ran {len(executions)} times, not {runs_allowed}")
    return run.finish()


# -- 3. a frozen worker ---------------------------------------------------------------------


def freeze(project: ProjectLike, scale: Scale) -> list[Figures]:
    """Worker A starts ``fail_first``; A's process group is stopped (SIGSTOP) for longer than
    the lease; B takes the task over and records SUCCESS; then A goes on (SIGCONT) and its
    late FAILURE must be refused."""
    run = Run(project, scale, "freeze", f"SIGSTOP >= {scale.freeze_stop:g}s, lease {LEASE:g}s")
    expected: dict[str, str] = {}
    task_id = follow = ""
    with run.guarded():
        a = run.worker("freeze-a", "-c", "1", "-Q", "default,freeze-a")
        a.wait_ready()
        task_id = _apply(run, "fail_first", (4.0,))
        expected[task_id] = "SUCCESS"
        run.wait_for("A to start the task", lambda: any(
            r.task_id == task_id and r.hostname == "freeze-a"
            for r in read_journal(run.journal)), 30)
        b = run.worker("freeze-b", "-c", "1", "-Q", "default")
        b.wait_ready()
        a.freeze()
        stopped = time.monotonic()
        run.wait_for("B to record SUCCESS while A is frozen", lambda: bool(run.project.query(
            "SELECT 1 FROM django_tasks_taskresult WHERE task_id = %s AND state = 'SUCCESS' "
            "AND worker = 'freeze-b'", (task_id,))), LEASE + 30)
        run.hold(max(0.0, scale.freeze_stop - (time.monotonic() - stopped)))
        offset = len(a.output())
        thawed = a.thaw()
        follow = _apply(run, "record", (), queue="freeze-a")  # only A consumes freeze-a
        expected[follow] = "SUCCESS"
        done = run.wait_drained(f"A's next task {follow} to succeed", until=lambda: (
            run.project.count("django_tasks_taskresult", "task_id = %s AND state = 'SUCCESS'",
                              (follow,)) == 1))
        # A's late outcome comes, if at all, before A takes its next task; watch a while
        # longer all the same.
        run.hold(max(0.0, thawed.end + scale.freeze_watch - time.time()))
        if done is not None:
            run.figures.recovery = done - thawed.end
        late = a.output()[offset:]
        if "lease" not in late.lower():
            run.problem("A's output after SIGCONT never mentions the lease: its late outcome "
                        "was not refused, or not said to be")
        run.require_running()
    results = run.judge(expected)
    row, next_row = results.get(task_id), results.get(follow)
    if row is not None and row["worker"] != "freeze-b":
        run.problem(f"the task's result names worker {row['worker']!r}, not freeze-b")
    if next_row is not None and next_row["worker"] != "freeze-a":
        run.problem(f"A's next task was run by {next_row['worker']!r}, not by A")
    return [run.finish()]


def _apply(run: Run, task: str, args: tuple[object, ...], queue: str = "default") -> str:
    return str(run.script(f"""
        from {TASKS} import {task}
        result = {task}.apply_async(({str(run.journal)!r}, *{args!r}), queue={queue!r}).id
    """))


# -- 4. database outages through the proxy --------------------------------------------------


def outage(project: ProjectLike, scale: Scale) -> list[Figures]:
    """A drain through the proxy, cut off (refused or black-holed) in its middle."""
    return [row for mode, seconds in scale.outages
            for row in _outage_run(project, scale, mode, seconds)]


def _outage_run(project: ProjectLike, scale: Scale, mode: str,
                seconds: float) -> list[Figures]:
    run = Run(project, scale, "outage", f"{mode} {seconds:g}s")
    expected: dict[str, str] = {}
    proxy = Proxy(upstream(project)).start()
    try:
        with run.guarded():
            expected = dict.fromkeys(run.enqueue(scale.outage_tasks, scale.outage_task_seconds),
                                     "SUCCESS")
            # Status 4: the worker's stall watch gave up on the database (documented).
            run.worker("outage", "-c", "2", "-l", "warning", allowed_exits={4},
                       DATABASE_URL=proxy.url_for(project.url))
            if run.wait_ended(int(len(expected) * 0.3), "30% of the tasks to run") is not None:
                with proxy.outage(mode):
                    start = time.time()
                    run.hold(seconds)
                end = proxy.stats.outages[-1][2]
                accepted_before = proxy.stats.accepted
                run.faults.append(Fault("outage", "outage", start, end, detail=mode))
                done = run.wait_drained()
                run.hold(QUIET)
                if done is not None:
                    run.figures.recovery = max(0.0, done - end)
                    run.figures.throughput = _rate(run, list(expected), until=done)
                stats = proxy.stats
                # Felt: connections were reset or held, or the worker had to connect anew.
                touched = (stats.reset if mode == "refuse" else stats.held_at_blackhole
                           + stats.accepted_in_blackhole) + stats.accepted - accepted_before
                if not touched:
                    run.problem(f"the outage touched no connection of the worker (accepted "
                                f"{stats.accepted}, none reset, held or opened after it): it "
                                "tested nothing")
                run.figures.details.append(
                    f"proxy: {stats.accepted} connections, {stats.reset} reset, "
                    f"{stats.held_at_blackhole} held, {stats.accepted_in_blackhole} accepted "
                    f"in the blackhole, {stats.bytes_up} B up, {stats.bytes_down} B down")
            run.require_running()
        run.judge(expected)
        return [run.finish()]  # the workers stop before the proxy does
    finally:
        proxy.stop()


# -- 5. the server drops the worker's connections -------------------------------------------


def terminate(project: ProjectLike, scale: Scale) -> list[Figures]:
    """pg_terminate_backend / KILL CONNECTION of every connection of the worker, a few times
    during a drain."""
    how = "pg_terminate_backend" if project.backend == "postgres" else "KILL CONNECTION"
    run = Run(project, scale, "terminate", f"{how} x{scale.terminate_times}")
    expected: dict[str, str] = {}
    with run.guarded():
        expected = dict.fromkeys(run.enqueue(scale.terminate_tasks,
                                             scale.terminate_task_seconds), "SUCCESS")
        run.worker("terminate", "-c", "2", "-l", "warning")
        last: float | None = None
        for k in range(scale.terminate_times):
            share = (k + 1) / (scale.terminate_times + 2)
            if run.wait_ended(int(len(expected) * share),
                              f"{share:.0%} of the tasks to run") is None:
                break
            dropped, deadline = 0, time.monotonic() + 2.0
            while not dropped and time.monotonic() < deadline:  # it may be between connections
                last = time.time()
                dropped = drop_connections(project)
                if not dropped:
                    time.sleep(0.05)
            run.faults.append(Fault("terminate", "terminate", last or time.time(),
                                    last or time.time(), detail=f"{dropped} connections"))
            if not dropped:
                run.problem(f"{how} found no connection of the worker to drop in 2s")
        done = run.wait_drained()
        run.hold(QUIET)
        if done is not None and last is not None:
            run.figures.recovery = max(0.0, done - last)
        run.require_running()
    run.judge(expected)
    return [run.finish()]


# -- 6. bad rows among innocents ------------------------------------------------------------


#: Share of the innocents left out at either end of a drain when comparing throughputs.
TRIM = 0.05


@dataclass(frozen=True)
class BadRow:
    label: str
    column_id: str  # the queue row's task_id column
    body: str
    failure_id: str  # where its FAILURE must be recorded
    header_id: str | None = None  # the id in its headers, where it differs


def bad_rows_for(journal: Path) -> list[BadRow]:
    """The bad messages: each is what a foreign producer or a corrupted row might hold."""
    from django_tasks.message import Message

    def envelope(task_id: str, task: str = f"{TASKS}.record",
                 args: tuple[object, ...] = (str(journal),)) -> dict[str, object]:
        return Message(id=task_id, task=task, args=args).to_envelope()

    def text(data: dict[str, object], **raw: str) -> str:
        """JSON of ``data`` with each ``"@name@"`` string replaced by raw JSON text."""
        body = json.dumps(data)
        for name, value in raw.items():
            body = body.replace(f'"@{name}@"', value)
        return body

    rows = []
    ids = [new_id() for _ in range(11)]
    rows.append(BadRow("not JSON", ids[0], "{this is not JSON", ids[0]))
    rows.append(BadRow("unknown task name", ids[1],
                       json.dumps(envelope(ids[1], "no.such.task")), ids[1]))
    wrong = envelope(ids[2])
    wrong["body"] = [[str(journal), 0, None, "one", "too many"], {}, {}]
    rows.append(BadRow("wrong arguments", ids[2], json.dumps(wrong), ids[2]))
    rows.append(BadRow("NaN argument", ids[3], text(
        envelope(ids[3], args=(str(journal), 0, "@nan@")), nan="NaN"), ids[3]))
    rows.append(BadRow("NUL in the task name", ids[4], json.dumps(
        envelope(ids[4], f"{TASKS}.record\x00")), ids[4]))  # json.dumps writes \u0000
    surrogate = envelope(ids[5])
    surrogate["headers"]["id"] = "\ud800"  # type: ignore[index]
    surrogate["properties"]["correlation_id"] = "\ud800"  # type: ignore[index]
    rows.append(BadRow("lone surrogate as the id", ids[5], json.dumps(surrogate), ids[5],
                       header_id="\ud800"))
    rows.append(BadRow("100,000-deep nested list", ids[6], text(
        envelope(ids[6], args=(str(journal), 0, "@deep@")),
        deep="[" * 100_000 + "]" * 100_000), ids[6]))
    rows.append(BadRow("5,000-digit int argument", ids[7], text(
        envelope(ids[7], args=(str(journal), 0, "@int@")), int="7" * 5000), ids[7]))
    retries = envelope(ids[8])
    retries["headers"]["retries"] = "@int@"  # type: ignore[index]
    rows.append(BadRow("5,000-digit int as 'retries'", ids[8], text(retries, int="7" * 5000),
                       ids[8]))
    long_id = ids[9] + "-" + "x" * 300
    rows.append(BadRow("id longer than 255", ids[9], json.dumps(envelope(long_id)), ids[9],
                       header_id=long_id))
    rows.append(BadRow("task name longer than 255", ids[10], json.dumps(
        envelope(ids[10], f"{TASKS}." + "n" * 300)), ids[10]))
    return rows


def bad_rows(project: ProjectLike, scale: Scale) -> list[Figures]:
    """Bad queue rows among ``bad_innocents`` innocent tasks, and (full) the innocents alone
    for comparison."""
    figures = _bad_run(project, scale)
    if not scale.bad_baseline:
        return [figures]
    # Throughput beside a clean run of the same innocents. A busy moment of the machine is
    # not a slowdown: below the bar, both are measured once more and the best of each kept.
    bad = [figures.throughput or 0.0]
    clean = [_clean_rate(project, scale, figures)]
    for attempt in (1, 2):
        if not max(clean) or not max(bad):
            figures.problems.append("no throughput to compare with a clean run")
            break
        figures.ratio = max(bad) / max(clean)
        if figures.ratio >= scale.bad_min_ratio or attempt == 2:
            break
        again = _bad_run(project, scale)
        figures.problems += [f"(second run) {p}" for p in again.problems]
        bad.append(again.throughput or 0.0)
        clean.append(_clean_rate(project, scale, figures))
    figures.throughput = max(bad) or figures.throughput
    figures.details.append("innocents per second with bad rows: "
                           + ", ".join(f"{r:.0f}" for r in bad) + "; alone: "
                           + ", ".join(f"{r:.0f}" for r in clean))
    if figures.ratio is not None and figures.ratio < scale.bad_min_ratio:
        figures.problems.append(
            f"the innocents ran at {figures.ratio:.0%} of a clean run's throughput (best of "
            f"{len(bad)}; at least {scale.bad_min_ratio:.0%} wanted)")
    return [figures]


def _bad_run(project: ProjectLike, scale: Scale) -> Figures:
    run = Run(project, scale, "bad-rows", f"11 bad rows among {scale.bad_innocents}")
    rows = bad_rows_for(run.journal)
    expected: dict[str, str] = {}
    innocents: list[str] = []
    seconds = scale.bad_task_seconds
    with run.guarded():
        step = max(1, scale.bad_innocents // (len(rows) + 1))
        for index, row in enumerate(rows):  # bad rows spread evenly among the innocents
            innocents += run.enqueue(step, seconds)
            insert_raw(project, row.column_id, row.body)
            if index == len(rows) - 1:
                innocents += run.enqueue(scale.bad_innocents - len(innocents), seconds)
        expected = {**dict.fromkeys(innocents, "SUCCESS"),
                    **{row.failure_id: "FAILURE" for row in rows}}
        run.worker("bad-rows", "-c", "2")
        run.wait_drained()
        run.hold(QUIET)
        run.figures.throughput = _rate(run, innocents, trim=TRIM)
        run.require_running()
    results = run.judge(expected, innocents=innocents)
    runs = by_task(read_journal(run.journal))
    for row in rows:
        ran = [i for i in {row.column_id, row.header_id} if i and i in runs]
        if ran:
            run.problem(f"the bad row '{row.label}' ran {len(runs[ran[0]])} times")
        got = results.get(row.failure_id)
        if got is None or got["state"] != "FAILURE":  # judge() counted it
            state = got["state"] if got else "no result row"
            run.figures.details.append(f"bad row '{row.label}' ({row.failure_id}): {state}")
    return run.finish()


def _clean_rate(project: ProjectLike, scale: Scale, figures: Figures) -> float:
    """Drain the innocents alone, in fresh tables; their rate (0 if that failed)."""
    clean = Run(project, scale, "bad-rows-baseline")
    ids: list[str] = []
    with clean.guarded():
        ids = clean.enqueue(scale.bad_innocents, scale.bad_task_seconds)
        clean.worker("bad-rows-clean", "-c", "2")
        clean.wait_drained()
    clean.finish()
    if clean.figures.problems:
        figures.details.append(f"the clean run failed: {clean.figures.problems[:3]}")
        return 0.0
    return _rate(clean, ids, trim=TRIM) or 0.0


def _rate(run: Run, ids: Sequence[str], until: float | None = None,
          trim: float = 0.0) -> float | None:
    """Tasks per second, from the first start in the journal to ``until`` (by default the
    last end). With ``trim``, only between the ends of that share of the tasks at either
    end of the drain: a steadier figure, without the ramp-up and the tail."""
    wanted = set(ids)
    runs = [r for r in read_journal(run.journal) if r.task_id in wanted]
    ends = sorted(r.end for r in runs if r.end is not None)
    if not runs or not ends:
        return None
    if trim:
        skip = int(len(ends) * trim)
        kept = ends[skip:len(ends) - skip]
        if len(kept) < 2:
            return None
        return (len(kept) - 1) / max(0.001, kept[-1] - kept[0])
    return len(wanted) / max(0.001, (until or ends[-1]) - runs[0].start)


# -- 7. enqueue under concurrency -----------------------------------------------------------

_PRODUCER = """
    import threading, time
    from django.db import connections, transaction
    from {tasks} import record
    journal = {journal!r}
    committed, rolled_back, unknown, errors = [], [], [], []
    lock = threading.Lock()
    gate = threading.Barrier({threads})

    class Rollback(Exception):
        pass

    def work(index):
        mine = ([], [], [])  # committed, rolled back, unknown
        try:
            gate.wait()
            for i in range({rounds}):
                kind = (index + i) % 4
                attempted, inner = [], []
                try:
                    if kind == 0:  # commit
                        with transaction.atomic():
                            attempted.append(record.delay(journal).id)
                            time.sleep(0.002)
                        mine[0].extend(attempted)
                    elif kind == 1:  # roll back
                        try:
                            with transaction.atomic():
                                attempted.append(record.delay(journal).id)
                                time.sleep(0.002)
                                raise Rollback
                        except Rollback:
                            mine[1].extend(attempted)
                    elif kind == 2:  # a savepoint rolls back, the transaction commits
                        with transaction.atomic():
                            attempted.append(record.delay(journal).id)
                            try:
                                with transaction.atomic():
                                    inner.append(record.delay(journal).id)
                                    raise Rollback
                            except Rollback:
                                pass
                            attempted.append(record.delay(journal).id)
                        mine[0].extend(attempted)
                        mine[1].extend(inner)
                    else:  # a savepoint is released, the transaction rolls back
                        try:
                            with transaction.atomic():
                                with transaction.atomic():
                                    attempted.append(record.delay(journal).id)
                                time.sleep(0.002)
                                raise Rollback
                        except Rollback:
                            mine[1].extend(attempted)
                except Exception as exc:  # the server rolled the transaction back
                    mine[2].extend(attempted + inner)
                    with lock:
                        errors.append(repr(exc))
        finally:
            connections.close_all()
            with lock:
                committed.extend(mine[0])
                rolled_back.extend(mine[1])
                unknown.extend(mine[2])

    threads = [threading.Thread(target=work, args=(n,)) for n in range({threads})]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = {{"committed": committed, "rolled_back": rolled_back, "unknown": unknown,
              "errors": errors}}
"""


def enqueue(project: ProjectLike, scale: Scale) -> list[Figures]:
    """Producers in several processes and threads commit, roll back, and roll back only a
    savepoint, while a worker drains."""
    p, t = scale.enqueue_processes, scale.enqueue_threads
    run = Run(project, scale, "enqueue", f"{p} processes x {t} threads")
    expected: dict[str, str] = {}
    rolled: list[str] = []
    with run.guarded():
        # No fault here: the default lease. The faults' 3 s lease is shorter than a worker
        # may wait for SQLite's write lock while nine producers write (it waited ~3 s once,
        # its lease lapsed, and a task ran twice: by the contract, not a transactional hole).
        run.worker("enqueue", "-c", "2", TASKS_LEASE_SECONDS="30",
                   TASKS_HEARTBEAT_SECONDS="5").wait_ready()
        code = _PRODUCER.format(tasks=TASKS, journal=str(run.journal), threads=t,
                                rounds=scale.enqueue_rounds)
        started = []
        for _ in range(p):
            command, out = script_command(project, run.dir, code)
            with out.with_suffix(".log").open("wb") as log:  # the child keeps its own copy
                started.append((subprocess.Popen(command, cwd=ROOT, env=project.env,
                                                 stdout=log, stderr=subprocess.STDOUT), out))
        try:
            run.wait_for("the producers to finish", lambda: all(
                proc.poll() is not None for proc, _ in started), scale.cap)
        except Stuck:
            for proc, _ in started:
                proc.kill()
                proc.wait(timeout=30)
            raise
        for proc, out in started:
            text = out.with_suffix(".log").read_text(errors="replace")
            if proc.returncode or not out.exists():
                run.problem(f"a producer failed ({proc.returncode}): {text[-1000:]}")
                continue
            made = json.loads(out.read_text())
            expected.update(dict.fromkeys(made["committed"], "SUCCESS"))
            # A transaction that failed (a deadlock, say) was rolled back by the server.
            rolled += made["rolled_back"] + made["unknown"]
            if made["unknown"]:
                run.problem(f"{len(made['errors'])} enqueue transactions failed in a producer "
                            f"(their {len(made['unknown'])} tasks count as rolled back): "
                            f"{sorted(set(made['errors']))[:3]}")
        run.figures.details.append(f"{len(expected)} committed, {len(rolled)} rolled back")
        if not expected or not rolled:
            run.problem("the producers committed or rolled back nothing")
        run.wait_drained()
        run.hold(QUIET)
        run.require_running()
    run.judge(expected, rolled_back=rolled)
    return [run.finish()]


# -- the catalogue --------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    run: Scenario
    backends: tuple[str, ...]


def kill_loop_on_other_brokers(project: ProjectLike, scale: Scale) -> list[Figures]:
    """The kill loop with the messages on Redis and on RabbitMQ (results in the database)."""
    return [row for broker in OTHER_BROKERS for row in kill_loop(project, scale, broker)]


SCENARIOS: dict[str, Entry] = {
    "kill-loop": Entry(kill_loop, ALL_BACKENDS),
    "kill-loop-brokers": Entry(kill_loop_on_other_brokers, ("sqlite",)),
    "poison": Entry(poison, ALL_BACKENDS),
    "freeze": Entry(freeze, ALL_BACKENDS),
    "outage": Entry(outage, SERVER_BACKENDS),
    "terminate": Entry(terminate, SERVER_BACKENDS),
    "bad-rows": Entry(bad_rows, ALL_BACKENDS),
    "enqueue": Entry(enqueue, ALL_BACKENDS),
}
