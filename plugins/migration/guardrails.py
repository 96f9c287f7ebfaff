"""The cutover guardrails: one set of rules for the human gate's summary, the automatic decision and
the re-check after approval."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


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


def problems(rails: Guardrails, *, lag_bytes: dict[str, int], validation: dict[str, dict[str, Any]],
             now: datetime) -> list[str]:
    """Everything that forbids the cutover now; empty means go."""
    found = []
    for database, lag in sorted(lag_bytes.items()):
        if lag > rails.max_lag_bytes:
            found.append(f"database {database}: replication lag {lag} bytes is above max_lag_bytes {rails.max_lag_bytes}")
    for database, result in sorted(validation.items()):
        if result.get("mismatched_chunks") or result.get("failures"):
            found.append(f"database {database}: validation is not clean ({result})")
    state = window_state(now, rails.not_before, rails.not_after)
    if state == "closed":
        found.append(f"the cutover window closed at {rails.not_after}")
    return found


def summary(rails: Guardrails, *, lag_bytes: dict[str, int], validation: dict[str, dict[str, Any]],
            steps: list[str], now: datetime) -> str:
    """Markdown body for the approval gate: lag, validation and the planned steps."""
    lines = ["### Replication lag", ""]
    lines += [f"- `{db}`: {lag} bytes (limit {rails.max_lag_bytes})" for db, lag in sorted(lag_bytes.items())]
    lines += ["", "### Validation", ""]
    for db, result in sorted(validation.items()):
        lines.append(f"- `{db}`: {result.get('rows_compared', result.get('rows', '?'))} rows compared, "
                     f"{result.get('mismatched_chunks', 0)} mismatched chunks")
    lines += ["", "### Window", "", f"- not before: {rails.not_before or 'any time'}",
              f"- not after: {rails.not_after or 'any time'}",
              f"- now: {now.isoformat()} ({window_state(now, rails.not_before, rails.not_after)})",
              "", "### Planned steps", ""]
    lines += [f"{i}. {step}" for i, step in enumerate(steps, 1)]
    found = problems(rails, lag_bytes=lag_bytes, validation=validation, now=now)
    lines += ["", "### Guardrails", ""]
    lines += [f"- ⚠ {p}" for p in found] or ["- all clear"]
    lines += ["", "Rejecting leaves the source untouched."]
    return "\n".join(lines)
