"""Check functions for the fleet benchmark: each records when it started and how long it took, then runs the
project's own check. ``FLEET_PROBE_FILE`` names the file the records are appended to (one line each)."""

from __future__ import annotations

import os
import time

from triggers import checks, fleet

_FILE = None


def _record(key: str, started: float, ended: float) -> None:
    global _FILE
    if _FILE is None:
        _FILE = open(os.environ["FLEET_PROBE_FILE"], "a", buffering=1)  # noqa: SIM115 - kept open on purpose
    _FILE.write(f"{key} {started:.6f} {ended - started:.6f}\n")


def _key(kw: dict) -> str:
    return kw.get("slot_name") if "subscription" in kw else f"val:{kw['validation_id']}"


async def lag(**kw):
    started = time.time()
    try:
        return await fleet.native_cdc_lag(**kw)
    finally:
        _record(_key(kw), started, time.time())


async def validation(**kw):
    started = time.time()
    try:
        return await fleet.native_validation(**kw)
    finally:
        _record(_key(kw), started, time.time())


def lag_sync(**kw):
    started = time.time()
    try:
        return checks.poll_native_cdc_lag(**kw)
    finally:
        _record(_key(kw), started, time.time())


def validation_sync(**kw):
    started = time.time()
    try:
        return checks.poll_native_validation(**kw)
    finally:
        _record(_key(kw), started, time.time())
