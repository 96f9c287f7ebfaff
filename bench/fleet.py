"""Fleet: many lag and validation waits at once in one triggerer process, with real checks on local servers.

Half the waits are CdcLagSensor waits (a logical slot on the source, a subscription on the target, spread
over several databases), half ValidationCleanSensor waits (a completed pass with one open chunk that
differs). Each is a ``PollTrigger`` built as the sensor builds it, at the DAG's 2 s interval, all run on one
event loop; a watchdog measures how long the loop is ever blocked (as Airflow's triggerer does). A wait
that resumes in the worker (a validation ready for its recheck) is deferred again, polling one interval
later, as after the worker's check. Measured: each wait's poll interval (p95 and max, over nominal) and the
longest block.

The baseline is the same waits with the plain checks in threads (a new connection per check).
The real ``airflow triggerer`` then runs ``TRIGGERER_WAITS`` of the same waits (``--triggerer``).
"""

from __future__ import annotations

import asyncio
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from common import line, servers, size

WAITS = int(os.environ.get("FLEET_WAITS", size(500, 500)))
SECONDS = float(os.environ.get("FLEET_SECONDS", size(15, 60)))
BASELINE_SECONDS = size(10, 30)
INTERVAL = 2.0
DATABASES = 10
CONTROL = "fleet_control"
ROWS = 1000


def _db(i: int) -> str:
    return f"fleet_{i % DATABASES}"


def setup(source, target, lag_waits: int, validation_waits: int) -> None:
    from migration.validation import run_validation

    for server in (source, target):
        with psycopg.connect(server.conninfo(), autocommit=True) as conn:
            for d in range(DATABASES):
                conn.execute(f"CREATE DATABASE fleet_{d}")
    for d in range(DATABASES):
        for server, differs in ((source, False), (target, True)):
            with psycopg.connect(server.conninfo(f"fleet_{d}"), autocommit=True) as conn:
                conn.execute("CREATE TABLE fleet_t (id int PRIMARY KEY, v text)")
                conn.execute("INSERT INTO fleet_t SELECT g, md5(g::text) FROM generate_series(1, %s) g", (ROWS,))
                if differs:
                    conn.execute("UPDATE fleet_t SET v = 'differs' WHERE id = 7")
    for d in range(DATABASES):
        with psycopg.connect(source.conninfo(f"fleet_{d}"), autocommit=True) as src, \
                psycopg.connect(target.conninfo(f"fleet_{d}"), autocommit=True) as tgt:
            for i in range(d, lag_waits, DATABASES):
                src.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (f"fleet_slot_{i}",))
                tgt.execute(f"CREATE SUBSCRIPTION fleet_sub_{i} CONNECTION '{source.conninfo(f'fleet_{d}')}' "
                            "PUBLICATION fleet_pub WITH (connect = false)")
            for j in range(d, validation_waits, DATABASES):
                result = run_validation(src, tgt, schemas=["public"], control_schema=CONTROL,
                                        validation_id=f"fleet-{j}", run_id="bench", chunk_rows=ROWS)
                assert not result["clean"] and result["mismatched_chunks"] == 1, result


def triggers(lag_waits: int, validation_waits: int, *, ours: bool) -> list:
    from sensors.validation import ValidationCleanSensor
    from triggers.poll import PollTrigger

    made = []
    for i in range(lag_waits):
        kwargs = {"source_conn_id": "fleet_src", "target_conn_id": "fleet_tgt", "database": _db(i),
                  "slot_name": f"fleet_slot_{i}", "subscription": f"fleet_sub_{i}", "max_lag_bytes": 1024 * 1024,
                  "max_apply_age_s": 60.0, "control_schema": CONTROL, "schemas": ["public"],
                  "target_host": None, "target_port": None}
        made.append(PollTrigger(check="fleet_probe:lag_sync", kwargs=kwargs, poke_interval=INTERVAL,
                                async_check="fleet_probe:lag" if ours else None))
    for j in range(validation_waits):
        sensor = ValidationCleanSensor(task_id=f"v{j}", source_conn_id="fleet_src", target_conn_id="fleet_tgt",
                                       database=_db(j), schemas=["public"], validation_id=f"fleet-{j}",
                                       control_schema=CONTROL, chunk_rows=ROWS, run_id="bench", poll_interval=INTERVAL)
        kwargs = sensor.poll_kwargs({})
        made.append(PollTrigger(check="fleet_probe:validation_sync", kwargs=kwargs, poke_interval=INTERVAL,
                                async_check="fleet_probe:validation" if ours else None,
                                async_kwargs=sensor.async_poll_kwargs() if ours else None))
    return made


async def run_waits(made: list, seconds: float) -> dict:
    from triggers.fleet import close_all

    blocked, errors, events = [], [], {"resume": 0, "error": 0, "success": 0}
    stop = asyncio.Event()

    async def watchdog():
        began = time.monotonic()
        while not stop.is_set():
            before, cpu = time.monotonic(), time.thread_time()
            await asyncio.sleep(0.1)
            # Wall time over the 0.1 s asked for, and the loop thread's own CPU time in that stretch: on a
            # machine others load too, the first also counts time the process waited to be scheduled.
            blocked.append((time.monotonic() - before - 0.1, before - began, time.thread_time() - cpu))

    async def hold(trigger):
        while not stop.is_set():
            async for event in trigger.run():
                status = event.payload["status"]
                events[status] = events.get(status, 0) + 1
                if status == "error":
                    errors.append(event.payload["message"])
                    return
            # The worker checks at once and defers again: its next poll comes one interval later.
            trigger.jitter = False
            await asyncio.sleep(INTERVAL)

    pauses: list[float] = []

    def on_gc(phase: str, info: dict) -> None:
        # Python's cycle collector stops every thread, the loop's included: its longest pause is reported.
        if phase == "start":
            on_gc.started = time.perf_counter()
        else:
            pauses.append(time.perf_counter() - on_gc.started)

    gc.callbacks.append(on_gc)
    dog = asyncio.create_task(watchdog())
    tasks = []
    for trigger in made:
        # As Airflow's triggerer creates them: one at a time, yielding to the loop in between.
        tasks.append(asyncio.create_task(hold(trigger)))
        await asyncio.sleep(0)
    await asyncio.sleep(seconds)
    stop.set()
    await dog  # measured up to here: cancelling checks in flight below is the benchmark's own ending
    gc.callbacks.remove(on_gc)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await close_all()
    blocked.sort(reverse=True)
    return {"blocked_max": blocked[0][0], "blocked_top": [(round(b, 3), round(t, 1)) for b, t, _ in blocked[:4]],
            "busy_max": max(c for _, _, c in blocked), "gc_max": max(pauses, default=0.0), "events": events,
            "errors": errors}


def intervals(probe_file: Path, keys: list[str], since: float, until: float) -> tuple[list[float], list[float]]:
    """(every gap between two polls of one wait, each wait's mean interval over the window).

    A wait polled fewer than twice in the window counts the whole window as its interval."""
    starts: dict[str, list[float]] = {key: [] for key in keys}
    for text in probe_file.read_text().splitlines():
        key, started, _ = text.split()
        if since <= float(started) <= until and key in starts:
            starts[key].append(float(started))
    gaps, means = [], []
    for times in starts.values():
        times.sort()
        gaps += [b - a for a, b in zip(times, times[1:], strict=False)]
        means.append((times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else until - since)
    return gaps, means


def _key(trigger) -> str:
    kw = trigger.kwargs
    return kw["slot_name"] if "subscription" in kw else f"val:{kw['validation_id']}"


def measure(made: list, seconds: float, probe_file: Path) -> dict:
    probe_file.write_text("")
    started, cpu = time.time(), os.times()
    result = asyncio.run(run_waits(made, seconds))
    used = os.times()
    result["cpu"] = (used.user + used.system - cpu.user - cpu.system) / (time.time() - started)
    # From one interval in (after the jittered first polls) to the end of the run.
    gaps, means = intervals(probe_file, [_key(t) for t in made], started + INTERVAL, started + seconds)
    gaps.sort()
    means.sort()
    result["checks"] = len(probe_file.read_text().splitlines())
    result["p95"] = means[int(0.95 * (len(means) - 1))]
    result["max"] = max(gaps[-1] if gaps else 0.0, means[-1])
    result["median"] = statistics.median(means)
    return result


def main() -> None:
    lag_waits, validation_waits = WAITS // 2, WAITS - WAITS // 2
    settings = {"max_connections": "300", "max_replication_slots": str(lag_waits + 20),
                "shared_buffers": "128MB"}
    with servers(2, settings) as (source, target), tempfile.TemporaryDirectory(prefix="pgmig-fleet-") as tmp:
        setup(source, target, lag_waits, validation_waits)
        os.environ["AIRFLOW_CONN_FLEET_SRC"] = f"postgres://postgres@127.0.0.1:{source.port}/postgres"
        os.environ["AIRFLOW_CONN_FLEET_TGT"] = f"postgres://postgres@127.0.0.1:{target.port}/postgres"
        os.environ["FLEET_PROBE_FILE"] = probe = str(Path(tmp) / "probe.txt")
        ours = measure(triggers(lag_waits, validation_waits, ours=True), SECONDS, Path(probe))
        print(f"fleet: {WAITS} waits ({lag_waits} lag, {validation_waits} validation) at {INTERVAL:g} s for "
              f"{SECONDS:g} s: {ours['checks']} checks, {ours['cpu']:.2f} CPU s/s; poll interval median "
              f"{ours['median']:.3f} s, p95 {ours['p95']:.3f} s, max {ours['max']:.3f} s; loop blocked at most "
              f"{ours['blocked_max']:.3f} s (longest blocks, seconds into the run: {ours['blocked_top']}); loop "
              f"thread's CPU time between two watchdog wakeups at most {ours['busy_max']:.3f} s; longest garbage "
              f"collection {ours['gc_max']:.3f} s; load average {os.getloadavg()[0]:.1f}; events {ours['events']}")
        base = measure(triggers(lag_waits, validation_waits, ours=False), BASELINE_SECONDS, Path(probe))
        print(f"fleet: baseline (plain checks in threads): {base['checks']} checks, {base['cpu']:.2f} CPU s/s; "
              f"{len(base['errors'])} waits ended in errors; poll interval median "
              f"{base['median']:.3f} s, p95 {base['p95']:.3f} s, max {base['max']:.3f} s; loop blocked at most "
              f"{base['blocked_max']:.3f} s")
        line(f"fleet {WAITS} waits p95 of each wait's mean poll interval", ours["p95"], "s",
             "plain checks in threads, a new connection each", base["p95"])
        line(f"fleet {WAITS} waits max poll interval over nominal", ours["max"] / INTERVAL, "x", "limit", 1.2)
        line(f"fleet {WAITS} waits longest loop block", ours["blocked_max"], "s", "limit", 0.1)
        line(f"fleet {WAITS} waits longest loop busy stretch (CPU)", ours["busy_max"], "s", "limit", 0.1)
        if "--triggerer" in sys.argv or os.environ.get("BENCH_TRIGGERER", "1") == "1":
            from fleet_triggerer import run_real_triggerer

            run_real_triggerer(source, target, Path(tmp))


if __name__ == "__main__":
    main()
