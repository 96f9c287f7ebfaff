"""The critical section's timeline: every step timed, logged and journaled (migration.journal).

A step's ``started`` entry is durable before the step runs, except for a step that only reads or waits
(``read_only``: CDC applied, the proof, the reads alongside CDC), whose ``started`` goes with the next
write: recovery has nothing to undo after it. A ``done`` entry is written together with the next journal
write (the next step's ``started``, the commit point with the opening's ``started``, the outcome), in the
same statement and transaction: one synchronous commit per step that changes something, instead of two.
Nothing that decides a rerun or a teardown reads a step's ``done`` except for ``stop_cdc`` (whether CDC
must be resumed), so that one is written at once, as is ``open_target``'s (the window has ended by then,
and it stays apart from ``target_open``); ``failed`` is written at once too.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime
from typing import Any

import psycopg

from migration.journal import CutoverJournal
from migration.lsn import LSN

log = logging.getLogger(__name__)

Step = tuple[str, Callable[[], Any]]
# Journaled at once, never deferred: ``stop_cdc``, whose ``done`` a teardown or a rerun reads, and
# ``open_target``, whose ``done`` comes once writes are no longer blocked and before ``target_open``.
DONE_AT_ONCE = frozenset({"stop_cdc", "open_target"})


class Timeline:
    def __init__(self, journal: CutoverJournal | None = None) -> None:
        self.steps: list[dict[str, Any]] = []
        self.current: str | None = None
        self.journal = journal
        self.pending: list[tuple[str, str, dict[str, Any] | None]] = []

    def write(self, entry: str, state: str, detail: dict[str, Any] | None = None) -> None:
        """One journal entry, durable on return, with the deferred ``done`` entries before it."""
        if self.journal is None:
            return
        batch, self.pending = [*self.pending, (entry, state, detail)], []
        self.journal.write_many(batch)

    def flush(self) -> None:
        """Make the deferred entries durable now; a failure is logged (they are notes)."""
        if self.journal is None or not self.pending:
            return
        batch, self.pending = self.pending, []
        try:
            self.journal.write_many(batch)
        except psycopg.Error as exc:
            log.error("Could not journal %s: %s", [f"{e}={s}" for e, s, _ in batch], exc)

    def run(self, name: str, fn: Callable[[], Any], *, read_only: bool = False) -> Any:
        self.current = name
        if read_only:
            self.pending.append((f"step:{name}", "started", None))
        else:
            self.write(f"step:{name}", "started")
        started_at = datetime.now(UTC)
        start = time.monotonic()
        entry = {"step": name, "started_at": started_at.isoformat(), "_start": start}
        try:
            detail = fn()
        except BaseException as exc:
            entry.update(seconds=round(time.monotonic() - start, 6), ended_at=datetime.now(UTC).isoformat(), ok=False,
                         error=f"{type(exc).__name__}: {exc}")
            self.steps.append(entry)
            log.error("Cutover step %s failed after %.3f s: %s", name, entry["seconds"], exc)
            self._record(name, "failed", {"error": entry["error"]})
            raise
        end = time.monotonic()
        entry.update(seconds=round(end - start, 6), ended_at=datetime.now(UTC).isoformat(), ok=True, _end=end,
                     detail=jsonable(detail))
        self.steps.append(entry)
        log.info("Cutover step %s done in %.3f s: %s", name, entry["seconds"], entry["detail"])
        self._record(name, "done", {"seconds": entry["seconds"]})
        return detail

    def start(self, steps: Sequence[Step]) -> list[tuple[dict[str, Any], Future]]:
        """Start read-only ``steps`` in threads of their own; ``join`` collects them."""
        if not steps:
            return []
        pool = ThreadPoolExecutor(max_workers=len(steps), thread_name_prefix="cutover")
        started = []
        for name, fn in steps:
            self.pending.append((f"step:{name}", "started", None))
            entry = {"step": name, "started_at": datetime.now(UTC).isoformat(), "_start": time.monotonic()}
            started.append((entry, pool.submit(_timed, fn)))
        pool.shutdown(wait=False)
        return started

    def join(self, started: list[tuple[dict[str, Any], Future]], timeout_s: Callable[[], float]) -> None:
        """Wait for steps begun with ``start``, recording each as ``run`` does; the first failure raises."""
        for entry, future in started:
            name = self.current = entry["step"]
            try:
                detail, seconds = future.result(timeout=timeout_s())
            except BaseException as exc:
                if isinstance(exc, FutureTimeout):
                    exc = TimeoutError(f"step {name} did not finish in time")
                entry.update(seconds=round(time.monotonic() - entry["_start"], 6), ok=False,
                             ended_at=datetime.now(UTC).isoformat(), error=f"{type(exc).__name__}: {exc}")
                self.steps.append(entry)
                log.error("Cutover step %s failed: %s", name, exc)
                self._record(name, "failed", {"error": entry["error"]})
                raise exc from None
            entry.update(seconds=round(seconds, 6), ended_at=datetime.now(UTC).isoformat(), ok=True,
                         _end=entry["_start"] + seconds, detail=jsonable(detail))
            self.steps.append(entry)
            log.info("Cutover step %s done in %.3f s (alongside others): %s", name, seconds, entry["detail"])
            self._record(name, "done", {"seconds": entry["seconds"]})

    def _record(self, name: str, state: str, detail: dict[str, Any]) -> None:
        if self.journal is None:
            return
        if state == "done" and name not in DONE_AT_ONCE:
            self.pending.append((f"step:{name}", state, detail))
            return
        try:
            self.write(f"step:{name}", state, detail)
        except psycopg.Error as exc:  # the step's own outcome matters more than its note
            log.error("Could not journal step %s as %s: %s", name, state, exc)

    def step(self, name: str) -> dict[str, Any] | None:
        return next((s for s in self.steps if s["step"] == name), None)

    def done(self, name: str) -> bool:
        found = self.step(name)
        return bool(found and found["ok"])

    def public_steps(self) -> list[dict[str, Any]]:
        return [{k: v for k, v in s.items() if not k.startswith("_")} for s in self.steps]


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.monotonic()
    return fn(), time.monotonic() - start


def settle(started: list[tuple[dict[str, Any], Future]]) -> None:
    """After an abort: steps still running in threads end (each statement is bounded by statement_timeout)
    before the caller may close their connections."""
    for _, future in started:
        try:
            future.result()
        except BaseException:  # noqa: BLE001, S110 - the abort already reports what failed
            pass


def jsonable(value: Any) -> Any:
    if isinstance(value, LSN):
        return str(value)
    return json.loads(json.dumps(value, default=str)) if value is not None else None
