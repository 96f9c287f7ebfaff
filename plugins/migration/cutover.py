"""The cutover's critical section: block source writes, drain, stop CDC, finish the target, prove, open it.

Parts plug in, so other platforms and engines reuse the same section and its abort path:

- a write fence (``migration.fence.RoleFence``: per-database read-only default and CONNECT for the
  listed roles and every member of them; the AWS security-group fence plugs in) with block / unblock;
- ``source_quiet.SourceDrain``, the same for every fence: it ends every client session on the migrated
  databases but the cutover's own, waits until nothing is in flight and reads the source's final LSN;
- a CDC engine (``NativeCdc`` here; DMS plugs in) with drain(final_lsn, timeout) / stop;
- ``source_quiet.ChangesAfterFinalLsn``, the proof: once CDC is stopped, the slots hold no change that
  the target has not applied. Whatever a fence missed fails here, before the target opens, instead of
  being lost;
- a target opener (``LocalTargetOpener`` here; a DNS switch plugs in) with open / revert.

Every step is recorded in the run's ``CutoverJournal`` (migration.journal) before and after it runs
(migration.cutover_timeline: a step's ``done`` goes with the next entry, in one commit).
Any failure before the commit point (the moment the target is about to open) restores the source's
writes exactly and raises ``CutoverAborted``. Past the commit point the source reopens only if the
opening was reverted and the revert confirmed; otherwise the fence stays and the error says what to do.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import psycopg

from migration import sql as sqlfiles
from migration.cutover_timeline import Step, Timeline, jsonable, settle
from migration.journal import CutoverJournal, JournalState
from migration.lsn import LSN
from migration.native_cdc import drop_subscription, enable_subscription, slot_positions, subscription_state

if TYPE_CHECKING:  # they raise CutoverError, so they import this module
    from migration.source_quiet import ChangesAfterFinalLsn, SourceDrain

log = logging.getLogger(__name__)


class CutoverError(RuntimeError):
    """A cutover step cannot go on; the message says why."""


class CutoverAborted(CutoverError):
    """The cutover stopped after blocking writes; ``timeline`` shows what ran, ``failed_step`` what failed.

    ``fence_kept`` is True when the source stays fenced on purpose (the target may already be reachable).
    """

    def __init__(self, message: str, *, failed_step: str, timeline: dict[str, Any], fence_kept: bool = False):
        super().__init__(message)
        self.failed_step = failed_step
        self.timeline = timeline
        self.fence_kept = fence_kept


class WriteFence(Protocol):
    """Keeps clients from writing to the source. May also define ``prepare()`` (checks, before blocking)."""

    name: str

    def block(self) -> Any: ...
    def unblock(self) -> Any: ...


class CdcEngine(Protocol):
    """Carries changes to the target. May also define ``prepare()`` (checks, before blocking)."""

    name: str

    def drain(self, final_lsn: LSN, timeout: float) -> dict[str, Any]: ...
    def stop(self) -> dict[str, Any]: ...


class TargetOpener(Protocol):
    """Sends clients to the target. ``external`` says whether ``open`` changes anything outside the
    journal (DNS does); ``revert()`` undoes it and returns True only once the undo is confirmed."""

    name: str
    external: bool

    def open(self) -> dict[str, Any]: ...
    def revert(self) -> bool: ...


# ---------------------------------------------------------------- native CDC

@dataclass(frozen=True)
class NativeCdcDatabase:
    """One database's replication: the slot on the source, the subscription on the target."""

    database: str
    slot_name: str
    subscription: str
    target_conn: psycopg.Connection


@dataclass
class NativeCdc:
    """Logical replication as the cutover's CDC engine: applied means the slot confirmed past the LSN."""

    source_conn: psycopg.Connection
    links: Sequence[NativeCdcDatabase]
    poll_interval_s: float = 0.002
    name: str = "native"

    def prepare(self) -> dict[str, Any]:
        slots = slot_positions(self.source_conn, [link.slot_name for link in self.links])
        for link in self.links:
            if link.slot_name not in slots:
                raise CutoverError(f"database {link.database}: slot {link.slot_name} does not exist on the source")
            state = subscription_state(link.target_conn, link.subscription)
            if state is None or not state["enabled"]:
                raise CutoverError(f"database {link.database}: subscription {link.subscription} is "
                                   f"{'missing' if state is None else 'disabled'} on the target; CDC is not running. "
                                   f"{self.resume_hint()}")
            link.target_conn.execute(sqlfiles.compose("cutover_subscription_synchronous",
                                                      subscription=link.subscription))
        return {link.database: {"slot": link.slot_name,
                                "confirmed_flush_lsn": slots[link.slot_name]["confirmed_flush_lsn"]}
                for link in self.links}

    def drain(self, final_lsn: LSN, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        names = [link.slot_name for link in self.links]
        # WAL is one stream per server: one flush makes the final LSN sendable for every slot.
        self.source_conn.execute(sqlfiles.load("cutover_flush_source_wal"))
        while True:
            slots = slot_positions(self.source_conn, names)
            behind = {name: slots[name]["confirmed_flush_lsn"] if name in slots else None for name in names
                      if name not in slots or slots[name]["confirmed_flush_lsn"] is None
                      or LSN(slots[name]["confirmed_flush_lsn"]) < final_lsn}
            if not behind:
                return {"final_lsn": str(final_lsn),
                        "confirmed": {name: slots[name]["confirmed_flush_lsn"] for name in names}}
            if time.monotonic() > deadline:
                raise CutoverError(f"CDC did not apply past the source's final LSN {final_lsn} within {timeout:g} s; "
                                   f"slots still behind (confirmed position): {behind}")
            time.sleep(self.poll_interval_s)

    def stop(self) -> dict[str, Any]:
        """Disable each subscription and end its apply worker: nothing more is applied, the source's slot is
        released, and the subscription keeps its origin, so ``resume()`` goes on exactly where it stopped."""
        for link in self.links:
            link.target_conn.execute(sqlfiles.compose("native_cdc_disable_subscription",
                                                      subscription=link.subscription))
        for link in self.links:
            link.target_conn.execute(sqlfiles.load("cutover_stop_apply_worker"), {"name": link.subscription})
        deadline = time.monotonic() + 30
        stopped = {}
        for link in self.links:
            while (state := subscription_state(link.target_conn, link.subscription)) and state["worker_pid"]:
                if time.monotonic() > deadline:
                    raise CutoverError(f"database {link.database}: the apply worker of {link.subscription} "
                                       f"(pid {state['worker_pid']}) did not stop")
                time.sleep(self.poll_interval_s)
            stopped[link.database] = {"subscription": link.subscription,
                                      "origin_lsn": state["origin_lsn"] if state else None}
        return {"stopped": stopped}

    def relax(self) -> dict[str, Any]:
        """After an abort: apply commits asynchronously again, as before ``prepare`` (several times the
        transactions per second while CDC goes on)."""
        for link in self.links:
            link.target_conn.execute(sqlfiles.compose("cutover_subscription_asynchronous",
                                                      subscription=link.subscription))
        return {"synchronous_commit": "off", "subscriptions": [link.subscription for link in self.links]}

    def resume(self) -> dict[str, Any]:
        """After an abort: enable the subscriptions again; apply resumes from each one's origin."""
        return {link.database: enable_subscription(link.target_conn, link.subscription) for link in self.links}

    @staticmethod
    def resume_hint() -> str:
        return ("To resume CDC, enable the database's subscription on the target (ALTER SUBSCRIPTION … ENABLE): "
                "it applies from exactly where it stopped.")

    def finish(self) -> dict[str, Any]:
        """After the target opened: drop the stopped subscriptions (and their stored credentials); the
        source's slots stay for cleanup."""
        return {link.database: drop_subscription(link.target_conn, link.subscription) for link in self.links}


# ---------------------------------------------------------------- opening the target

@dataclass
class LocalTargetOpener:
    """Local platform: nothing outside the journal changes; the endpoint is recorded as where the data lives."""

    endpoint: dict[str, Any]
    name: str = "local"
    external: bool = False

    def open(self) -> dict[str, Any]:
        return dict(self.endpoint)

    def revert(self) -> bool:
        return True


# ---------------------------------------------------------------- the critical section

def _optional(obj: Any, method: str) -> Callable[[], Any]:
    return getattr(obj, method, None) or (lambda: None)


@dataclass
class CutoverPlan:
    """Everything the critical section runs with. ``before_fence`` steps (sequences set ahead of the
    fence) run after the fence's and the proof's ``prepare`` checks, before the CDC engine's; ``after_drain``
    steps (the schema drift re-check) run once the source is quiet, before CDC is waited on;
    ``alongside_cdc`` steps only read the quiet source, each on a connection of its own: they start in
    threads once the source is drained and run alongside the ``after_drain`` steps and CDC's last apply
    and stop, and the ``after_stop`` steps start once they are done; ``after_stop`` steps
    (sequence sync, trigger enabling) run after CDC stops; ``undo_after_stop`` steps (triggers disabled
    again) run on an abort once CDC has stopped; ``resume_hint`` says how to resume the engine's CDC
    after such an abort."""

    journal: CutoverJournal
    fence: WriteFence
    drain: SourceDrain
    cdc: CdcEngine
    proof: ChangesAfterFinalLsn
    opener: TargetOpener
    databases: Sequence[str]
    before_fence: Sequence[Step] = ()
    after_drain: Sequence[Step] = ()
    alongside_cdc: Sequence[Step] = ()
    after_stop: Sequence[Step] = ()
    undo_after_stop: Sequence[Step] = ()
    drain_timeout_s: float = 60.0
    max_write_block_s: float = 60.0
    resume_hint: str = ""
    unfenceable_roles: Sequence[str] = ()


def run_cutover(plan: CutoverPlan) -> dict[str, Any]:
    """The critical section, each step timed, logged and journaled; returns the timeline.

    Order: ``before_fence`` steps -> block writes -> drain the source (every other session ended; final
    LSN) -> CDC applied past the final LSN -> stop CDC -> ``after_stop`` steps -> prove no change is left
    in the slots -> commit point -> open the target. The ``prepare`` checks run before writes are blocked,
    so a wrong name fails with the source untouched. Writes stay blocked at most ``max_write_block_s``: a
    step that ends past it aborts the cutover. A rerun of the same run reads the journal: once open, it
    changes nothing; past the commit point, it only opens the target again.
    """
    journal = plan.journal.ensure()
    state = journal.read()
    if state.target_open:
        outcome = state.outcome or {}
        log.info("This run already cut over at %s; nothing to do", state.entries["target_open"]["at"])
        return {**outcome.get("summary", {}), "status": "completed", "note": "already cut over by this run"}
    others = journal.opened_by_other_runs(list(plan.databases))
    if others:
        raise CutoverError(f"databases: run {others[0]['run_id']} already cut over {others[0]['detail']['databases']}"
                           "; the source stays fenced and there is nothing left to cut over")
    timeline = Timeline(journal)
    if state.commit_point and state.fenced:
        return _resume_at_commit_point(plan, timeline, state)

    timeline.run("prepare_fence", _optional(plan.fence, "prepare"))
    timeline.run("prepare_proof", plan.proof.prepare)
    for name, fn in plan.before_fence:
        timeline.run(name, fn)
    # Last before the fence: native CDC's prepare switches on synchronous apply, which applies fewer
    # transactions per second; the steps before it may take a while at scale.
    timeline.run("prepare_cdc", _optional(plan.cdc, "prepare"))
    final_lsn: LSN | None = None
    passed_commit = False
    alongside: list[tuple[dict[str, Any], Future]] = []
    try:
        timeline.run("block_writes", plan.fence.block)
        blocked_at = time.monotonic()

        def left() -> float:
            remaining = plan.max_write_block_s - (time.monotonic() - blocked_at)
            if remaining <= 0:
                raise CutoverError(f"writes have been blocked for longer than max_write_block_seconds "
                                   f"({plan.max_write_block_s:g} s)")
            return remaining

        def drained() -> LSN:
            lsn = plan.drain.drain(min(plan.drain_timeout_s, left()))
            plan.proof.seen_sessions = list(getattr(plan.fence, "ended", [])) + plan.drain.ended
            _refuse_unfenceable(plan.proof.seen_sessions, plan.unfenceable_roles)
            return lsn

        final_lsn = timeline.run("drain_source", drained)
        alongside = timeline.start(plan.alongside_cdc)
        for name, fn in plan.after_drain:
            timeline.run(name, fn)
        timeline.run("cdc_applied", lambda: plan.cdc.drain(
            final_lsn, min(plan.drain_timeout_s, left())), read_only=True)
        left()
        timeline.run("stop_cdc", plan.cdc.stop)
        timeline.join(alongside, left)
        for name, fn in plan.after_stop:
            left()
            timeline.run(name, fn)
        left()
        timeline.run("prove_source_quiet", plan.proof.check, read_only=True)
        left()
        timeline.pending.append(("commit_point", "passed", {
            "opener": plan.opener.name, "external": plan.opener.external, "final_lsn": str(final_lsn),
            "databases": list(plan.databases), "opener_state": jsonable(getattr(plan.opener, "state", None))}))
        timeline.write("step:open_target", "started")  # one commit: the commit point and the opening's start
        passed_commit = True
        opened = timeline.run("open_target", plan.opener.open, read_only=True)  # its start is written
    except BaseException as exc:
        try:
            _abort(plan, timeline, final_lsn, exc, passed_commit)
        finally:
            settle(alongside)
    return _opened(plan, timeline, final_lsn, opened)


def _refuse_unfenceable(ended: Sequence[dict[str, Any]], roles: Sequence[str]) -> None:
    """A client session of a login the fence must keep (the migration's own) could come back and write
    after the target opens: nothing can keep that login out, so the cutover stops here instead."""
    found = sorted({f"{s.get('role')}@{s.get('database')} ({s.get('application_name') or 'no application_name'})"
                    for s in ended if s.get("role") in set(roles)})
    if found:
        raise CutoverError(
            f"client sessions of {sorted(set(roles))} were connected to the migrated databases: {', '.join(found)}. "
            "The migration's own login must stay able to connect, so the fence cannot keep such a client from "
            "coming back and writing after the target opens. Stop that client, or give it a login of its own "
            "and list that login (or a group it belongs to) in cutover.application_roles")


def _opened(plan: CutoverPlan, timeline: Timeline, final_lsn: LSN | None, opened: Any) -> dict[str, Any]:
    timeline.write("target_open", "done", {"databases": list(plan.databases), "opener": plan.opener.name,
                                               "endpoint": jsonable(opened)})
    summary = _summary(timeline, plan, final_lsn, status="completed")
    timeline.write("outcome", "completed", {"summary": summary})
    # Outside the window: the target is open whatever this does; a failure is logged and left to cleanup.
    try:
        timeline.run("finish_cdc", _optional(plan.cdc, "finish"))
    except Exception:  # noqa: BLE001 - logged by the timeline
        pass
    timeline.flush()
    summary["steps"] = timeline.public_steps()
    summary["durations"] = {s["step"]: s["seconds"] for s in timeline.steps}
    return summary


def _resume_at_commit_point(plan: CutoverPlan, timeline: Timeline, state: JournalState) -> dict[str, Any]:
    """An earlier try of this run passed the commit point and did not confirm the opening; the source is
    still fenced and everything before the opening is done, so the only way is forward."""
    final_lsn = LSN(state.commit_point["final_lsn"])
    if state.commit_point.get("opener_state") is not None and hasattr(plan.opener, "state"):
        # What a revert must put back is what the first try found, not what the opening left.
        plan.opener.state = state.commit_point["opener_state"]
    log.info("Resuming this run's cutover at the commit point (final LSN %s): opening the target again", final_lsn)
    try:
        opened = timeline.run("open_target", plan.opener.open)
    except BaseException as exc:
        _abort(plan, timeline, final_lsn, exc, passed_commit=True)
    return _opened(plan, timeline, final_lsn, opened)


def _abort(plan: CutoverPlan, timeline: Timeline, final_lsn: LSN | None, exc: BaseException,
           passed_commit: bool) -> None:
    failed = timeline.current or "?"
    journal = plan.journal
    timeline.flush()
    if passed_commit:
        reverted = False
        try:
            reverted = bool(timeline.run("revert_open", plan.opener.revert))
        except BaseException as revert_exc:  # noqa: BLE001 - reported in the message below
            log.error("Reverting the opening failed: %s", revert_exc)
        if reverted:
            # Only a confirmed revert takes the run back before its commit point (here or in the teardown).
            timeline.write("commit_point", "reverted", {"final_lsn": str(final_lsn), "opener": plan.opener.name})
        if not reverted:
            result = _summary(timeline, plan, final_lsn, status="fence_kept", failed_step=failed)
            message = (f"cutover stopped at step {failed!r} after its commit point: {exc}. The opening "
                       f"({plan.opener.name}) may already send clients to the target and its revert was not "
                       "confirmed, so the source STAYS FENCED (writes on both sides would split the data). Next: "
                       "check where the application's endpoint points. If it points at the target, clear "
                       "cutover.switch_over: it resumes at opening the target. If it points at the source, run "
                       f"`airflow tasks test <dag> cutover.unblock_source_writes {plan.journal.run_id} "
                       "-t '{\"force_restore\": true}'`, which restores the source's writes.")
            _journal_outcome(timeline, "fence_kept", {"failed_step": failed, "error": str(exc), "summary": result})
            raise CutoverAborted(message, failed_step=failed, timeline=result, fence_kept=True) from exc
    stopped = timeline.done("stop_cdc")
    if not stopped:
        try:  # an earlier try of this run may have stopped CDC (a rerun past the commit point)
            stopped = journal.read().step("stop_cdc") == "done"
        except psycopg.Error as read_exc:
            log.error("Could not read the journal: %s", read_exc)
    resumed = False
    if stopped:
        undo = list(plan.undo_after_stop)
        if getattr(plan.cdc, "resume", None):
            undo.append(("resume_cdc", plan.cdc.resume))
        for name, fn in undo:
            try:
                timeline.run(name, fn)
            except BaseException:  # noqa: BLE001 - logged by the timeline; the restore must go on
                pass
        resumed = timeline.done("resume_cdc")
    hint = ""
    if stopped:
        hint = (" CDC had been stopped and was resumed where it stopped." if resumed else
                f" CDC had already been stopped and is not running. {plan.resume_hint}")
    try:
        timeline.run("restore_writes", plan.fence.unblock)
    except BaseException as undo_exc:
        _relax_cdc(plan, timeline)
        result = _summary(timeline, plan, final_lsn, status="aborted", failed_step=failed)
        _journal_outcome(timeline, "restore_failed", {"failed_step": failed, "error": str(exc), "summary": result})
        raise CutoverAborted(
            f"cutover aborted at step {failed!r}: {exc}. Restoring source writes FAILED too ({undo_exc}); the "
            f"source is still fenced: clear cutover.unblock_source_writes to restore them (it reads the "
            f"journal).{hint}",
            failed_step=failed, timeline=result) from exc
    _relax_cdc(plan, timeline)
    if passed_commit:
        _void_commit_point(timeline, {"final_lsn": str(final_lsn)})
    result = _summary(timeline, plan, final_lsn, status="aborted", failed_step=failed)
    _journal_outcome(timeline, "aborted", {"failed_step": failed, "error": str(exc), "summary": result})
    blocked = result["write_blocked_seconds"]
    raise CutoverAborted(
        f"cutover aborted at step {failed!r}: {exc}. Source writes were restored exactly as they were"
        f"{f' (blocked for {blocked:.3f} s)' if blocked is not None else ''}.{hint}",
        failed_step=failed, timeline=result) from exc


def _relax_cdc(plan: CutoverPlan, timeline: Timeline) -> None:
    # After the restore, not before: writes are back first. Synchronous apply was for the window only.
    if timeline.done("prepare_cdc") and getattr(plan.cdc, "relax", None):
        try:
            timeline.run("cdc_asynchronous", plan.cdc.relax)
        except BaseException:  # noqa: BLE001 - logged by the timeline; CDC still applies, only more slowly
            pass


def _void_commit_point(journal: CutoverJournal | Timeline, point: dict[str, Any] | None) -> None:
    # Writes are back on the source: an earlier commit point no longer lets a rerun open the target.
    if point:
        journal.write("commit_point", "void", point)


def _journal_outcome(journal: CutoverJournal | Timeline, state: str, detail: dict[str, Any]) -> None:
    try:
        journal.write("outcome", state, jsonable(detail))
    except psycopg.Error as exc:
        log.error("Could not journal the outcome %s: %s", state, exc)


def unblock_run(journal: CutoverJournal, restore: Callable[[list[dict[str, Any]]], list[str]], *,
                force: bool = False, undo_after_stop: Sequence[Step] = ()) -> dict[str, Any]:
    """The teardown's decision, from the journal alone: restore what this run's fence changed, unless the
    target is (or may be) open. ``restore`` puts back a list of fence records and returns what it restored.

    - target open: the source stays fenced (``force`` restores it: the application moved back);
    - past the commit point without a confirmed opening or revert: the fence stays and this raises,
      naming the next step (an external opening may already send clients to the target);
    - otherwise: every unrestored record is put back, once; and if CDC had been stopped (a worker died in
      the window), ``undo_after_stop`` runs (triggers disabled again, CDC resumed).
    """
    state = journal.ensure().read()
    if state.target_open and not force:
        return {"restored": [], "note": "the target is open; the source stays fenced"}
    point = state.commit_point
    if point and point.get("external") and not force:
        raise CutoverError(
            f"this run passed its commit point ({point.get('opener')} opening submitted) without confirming the "
            "opening or its revert, so the source stays fenced. Clear cutover.switch_over to finish the opening, "
            "or, once the endpoint points at the source again, run this task with the param force_restore "
            f"(`airflow tasks test <dag> cutover.unblock_source_writes {journal.run_id} "
            "-t '{\"force_restore\": true}'`)")
    undone = []
    if not state.target_open and state.step("stop_cdc") == "done":
        for name, fn in undo_after_stop:
            fn()
            undone.append(name)
    records = state.fence_records
    if not records:
        return {"restored": [], "undone": undone, "note": "nothing is fenced by this run"}
    restored = restore(records)
    journal.mark_restored()
    _void_commit_point(journal, point)
    _journal_outcome(journal, "restored", {"restored": restored, "undone": undone, "forced": force})
    log.info("Source writes restored for run %s: %s", journal.run_id, restored)
    return {"restored": restored, "undone": undone}


def _summary(timeline: Timeline, plan: CutoverPlan, final_lsn: LSN | None, *, status: str,
             failed_step: str | None = None) -> dict[str, Any]:
    blocked = timeline.step("block_writes")
    opened = timeline.step("open_target") if status == "completed" else timeline.step("restore_writes")
    end = opened.get("_end") if opened else None
    proof = timeline.step("prove_source_quiet")
    return {
        "status": status,
        "failed_step": failed_step,
        "fence": plan.fence.name,
        "cdc": plan.cdc.name,
        "run_id": plan.journal.run_id,
        "final_lsn": str(final_lsn) if final_lsn is not None else None,
        "writes_blocked_at": blocked["started_at"] if blocked else None,
        "target_open_at": opened["ended_at"] if opened and status == "completed" else None,
        "writes_restored_at": opened["ended_at"] if opened and status == "aborted" and opened["ok"] else None,
        "write_blocked_seconds": round(end - blocked["_start"], 6) if blocked and end else None,
        "source_quiet_proof": ({"ok": proof["ok"], "detail": proof.get("detail"), "error": proof.get("error")}
                               if proof else None),
        "durations": {s["step"]: s["seconds"] for s in timeline.steps},
        "steps": timeline.public_steps(),
    }
