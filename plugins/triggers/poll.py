"""One trigger for every deferrable wait: it polls a plain check function in a thread.

The check is named by its import path (``"triggers.checks:poll_native_cdc_lag"``) so the trigger
serializes to a few strings and numbers and runs unchanged in the triggerer. A check returns
``(done, payload)``; ``payload`` is a small JSON-able dict that ends up in the sensor's XCom.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


def resolve_check(path: str) -> Callable[..., tuple[bool, dict[str, Any]]]:
    module_name, _, attr = path.partition(":")
    if not attr:
        raise ValueError(f"check path {path!r} must look like 'package.module:function'")
    return getattr(importlib.import_module(module_name), attr)


class PollTrigger(BaseTrigger):
    """Calls ``check(**kwargs)`` every ``poke_interval`` seconds until it says done or time runs out."""

    def __init__(self, *, check: str, kwargs: dict[str, Any], poke_interval: float = 5.0,
                 timeout: float | None = None, started_at: float | None = None):
        super().__init__()
        self.check = check
        self.kwargs = kwargs
        self.poke_interval = poke_interval
        self.timeout = timeout
        self.started_at = started_at if started_at is not None else time.time()

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "triggers.poll.PollTrigger",
            {"check": self.check, "kwargs": self.kwargs, "poke_interval": self.poke_interval,
             "timeout": self.timeout, "started_at": self.started_at},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        check = resolve_check(self.check)
        attempts = 0
        while True:
            attempts += 1
            try:
                done, payload = await asyncio.to_thread(check, **self.kwargs)
            except Exception as exc:  # noqa: BLE001 - the sensor raises it with context
                yield TriggerEvent({"status": "error", "message": f"{type(exc).__name__}: {exc}",
                                    "attempts": attempts})
                return
            if done:
                yield TriggerEvent({"status": "success", "payload": payload, "attempts": attempts})
                return
            if self.timeout is not None and time.time() - self.started_at > self.timeout:
                yield TriggerEvent({"status": "timeout", "payload": payload, "attempts": attempts,
                                    "message": f"not done after {self.timeout:.0f} s; last state: {payload}"})
                return
            self.log.info("%s not done yet: %s", self.check, payload)
            await asyncio.sleep(self.poke_interval)
