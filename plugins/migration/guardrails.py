"""The cutover guardrails: one set of rules for the human gate's summary, the automatic decision and
the re-check after approval."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from migration.drift import drift_message


@dataclass(frozen=True)
class Guardrails:
    max_lag_bytes: int
    not_before: str | None = None
    not_after: str | None = None


def window_state(now: datetime, not_before: str | None, not_after: str | None) -> str:
    """'early', 'open' or 'closed' for the cutover window (times are ISO 8601 with offsets)."""
    if not_before and now < datetime.fromisoformat(not_before):
        return "early"
    if not_after and now > datetime.fromisoformat(not_after):
        return "closed"
    return "open"


def slot_warnings(retention: dict[str, dict[str, Any]] | None) -> list[str]:
    """What a person should know about the slots before approving: an aborted cutover keeps them so CDC
    can resume, and a kept slot retains the source's WAL until it is dropped."""
    found = []
    for database, slot in sorted((retention or {}).items()):
        retained = f"{slot['retained_bytes'] / 1048576:.1f} MiB"
        if slot.get("wal_status") in ("unreserved", "lost"):
            found.append(f"database {database}: the slot is {slot['wal_status']} (WAL it needs is or will be "
                         f"removed, max_slot_wal_keep_size {slot['max_slot_wal_keep_size']}); CDC cannot resume")
        elif str(slot.get("max_slot_wal_keep_size")) == "-1":
            found.append(f"database {database}: the slot retains {retained} of WAL and max_slot_wal_keep_size is "
                         "-1 (no limit): if the cutover aborts, the kept slot grows with every write until the "
                         "next attempt or cleanup; watch the source's free storage")
        else:
            found.append(f"database {database}: the slot retains {retained} of WAL; {slot.get('safe_wal_size')} "
                         f"bytes more before max_slot_wal_keep_size ({slot['max_slot_wal_keep_size']}) "
                         "invalidates it and CDC could not resume")
    return found


def problems(rails: Guardrails, *, lag_bytes: dict[str, int], validation: dict[str, dict[str, Any]],
             now: datetime, drift: dict[str, list[str]] | None = None, run_id: str | None = None,
             retention: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """Everything that forbids the cutover now; empty means go.

    ``drift``: per database, the objects whose definitions differ between source and target
    (``migration.drift.schema_drift``); any at all refuses the cutover. ``run_id``: the current run; a
    validation result that names another run is not this run's and refuses it too.
    """
    found = []
    for database, lag in sorted(lag_bytes.items()):
        if lag > rails.max_lag_bytes:
            found.append(f"database {database}: replication lag {lag} bytes is above max_lag_bytes "
                         f"{rails.max_lag_bytes}")
    for database, result in sorted(validation.items()):
        if result.get("mismatched_chunks") or result.get("failures"):
            found.append(f"database {database}: validation is not clean ({result})")
        elif run_id and result.get("run_id") not in (None, run_id):
            found.append(f"database {database}: the validation result is from run {result['run_id']}, not this run "
                         f"({run_id}); validate again in this run")
    for database, differences in sorted((drift or {}).items()):
        if differences:
            found.append(drift_message(differences, database=database))
    for database, slot in sorted((retention or {}).items()):
        if slot.get("wal_status") == "lost":
            found.append(f"database {database}: the slot lost WAL it needs (wal_status lost); start CDC again")
    state = window_state(now, rails.not_before, rails.not_after)
    if state == "closed":
        found.append(f"the cutover window closed at {rails.not_after}")
    return found


def _compared(result: dict[str, Any]) -> str:
    # What one database's validation compared in this run: tables and rows, per schema when known.
    rows = result.get("rows_compared", result.get("rows", "?"))
    text = f"{result.get('tables', '?')} tables, {rows} rows compared"
    by_schema = result.get("by_schema") or {}
    if by_schema:
        text += " (" + "; ".join(f"`{s}`: {v.get('tables', '?')} tables, {v.get('rows', '?')} rows"
                                 for s, v in sorted(by_schema.items())) + ")"
    if result.get("run_id"):
        text += f" in run `{result['run_id']}`"
    if result.get("compared_at"):
        text += f" at {result['compared_at']}"
    return text


AFTER_APPROVAL = [
    "These numbers were measured when this page was made and age while it waits. After you approve, "
    "`check_guardrails` measures again before anything changes on the source: replication lag, schema drift, "
    "the slots and the window (a window not yet open is waited for). Any problem then stops the cutover with "
    "the source untouched.",
    "Validation is not run again: the cutover uses this run's validation results shown above.",
    "Inside the cutover, with writes blocked, schema drift is checked once more and CDC must apply past the "
    "source's final LSN before the target opens.",
]


def utc_stamp(moment: datetime) -> str:
    """``2026-12-02 01:07:42 UTC``: a time as a person reads it (a naive time is taken as UTC)."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def summary(rails: Guardrails, *, lag_bytes: dict[str, int], validation: dict[str, dict[str, Any]],
            steps: list[str], now: datetime, drift: dict[str, list[str]] | None = None,
            run_id: str | None = None, retention: dict[str, dict[str, Any]] | None = None) -> str:
    """Markdown body for the approval gate: lag (with when it was measured), validation, schema drift, the
    planned steps, and what is checked again after approval. ``now``: when lag, drift and slots were measured."""
    measured = utc_stamp(now)
    lines = [f"### Replication lag (measured {measured})", ""]
    lines += [f"- `{db}`: {lag} bytes (limit {rails.max_lag_bytes})" for db, lag in sorted(lag_bytes.items())]
    lines += ["", "### Validation (this run)", ""]
    for db, result in sorted(validation.items()):
        lines.append(f"- `{db}`: {_compared(result)}, {result.get('mismatched_chunks', 0)} mismatched chunks")
    if drift is not None:
        lines += ["", "### Schema drift (source vs target catalogs)", ""]
        for db, differences in sorted(drift.items()):
            if not differences:
                lines.append(f"- `{db}`: none")
                continue
            lines.append(f"- `{db}`: {len(differences)} object(s) differ")
            lines += [f"  - {d}" for d in differences[:20]]
            if len(differences) > 20:
                lines.append(f"  - and {len(differences) - 20} more")
    if retention is not None:
        lines += ["", "### Slots kept on the source", ""]
        lines += [f"- {w}" for w in slot_warnings(retention)]
    lines += ["", "### Window", "", f"- not before: {rails.not_before or 'any time'}",
              f"- not after: {rails.not_after or 'any time'}",
              f"- now: {now.isoformat()} ({window_state(now, rails.not_before, rails.not_after)})",
              "", "### Planned steps", ""]
    lines += [f"{i}. {step}" for i, step in enumerate(steps, 1)]
    found = problems(rails, lag_bytes=lag_bytes, validation=validation, now=now, drift=drift, run_id=run_id,
                     retention=retention)
    lines += ["", "### Guardrails", ""]
    lines += [f"- ⚠ {p}" for p in found] or ["- all clear"]
    lines += ["", f"### After approval (this page: {measured})", ""]
    lines += [f"- {line}" for line in AFTER_APPROVAL]
    lines += ["", "Rejecting leaves the source untouched."]
    return "\n".join(lines)
