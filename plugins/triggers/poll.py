"""One trigger for every deferrable wait: it polls a check function until it says done.

The check is named by its import path (``"triggers.checks:poll_native_cdc_lag"``) so the trigger
serializes to a few strings and numbers and runs unchanged in the triggerer. A check returns
``(done, payload)``; ``payload`` is a small JSON-able dict that ends up in the sensor's XCom.

A plain check runs in a thread. A wait that many migrations hold at once names an async twin as well
(``async_check``, in triggers.fleet): it runs on the event loop over kept, shared connections. The check's
module is imported in a thread, never on the loop, and the first poll comes after a random part of the
interval (the sensor checked just before deferring), so waits deferred together do not poll together.
"""

from __future__ import annotations

import asyncio
import copy
import importlib
import random
import time
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


def resolve_check(path: str) -> Callable[..., tuple[bool, dict[str, Any]]]:
    module_name, _, attr = path.partition(":")
    if not attr:
        raise ValueError(f"check path {path!r} must look like 'package.module:function'")
    return getattr(importlib.import_module(module_name), attr)


# Async waits running per event loop (triggers.fleet keeps connections for them while any runs).
_ASYNC_WAITS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class _NeverRaised(Exception):
    """Stands in for triggers.fleet's signals when a wait has no async check."""


class PollTrigger(BaseTrigger):
    """Calls ``check(**kwargs)`` every ``poke_interval`` seconds until it says done or time runs out.

    With ``async_check`` the triggerer awaits that one instead (``**kwargs, **async_kwargs``); it may hand a
    poll back to the plain check (``UseSyncCheck``) or end the wait with a ``resume`` event
    (``ResumeInWorker``: the sensor goes on in a worker, where long work belongs).
    """

    def __init__(self, *, check: str, kwargs: dict[str, Any], poke_interval: float = 5.0,
                 timeout: float | None = None, started_at: float | None = None, async_check: str | None = None,
                 async_kwargs: dict[str, Any] | None = None, jitter: bool = True):
        super().__init__()
        self.check = check
        self.kwargs = kwargs
        self.poke_interval = poke_interval
        self.timeout = timeout
        self.started_at = started_at if started_at is not None else time.time()
        self.async_check = async_check
        self.async_kwargs = async_kwargs or {}
        self.jitter = jitter

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "triggers.poll.PollTrigger",
            {"check": self.check, "kwargs": self.kwargs, "poke_interval": self.poke_interval,
             "timeout": self.timeout, "started_at": self.started_at, "async_check": self.async_check,
             "async_kwargs": self.async_kwargs, "jitter": self.jitter},
        )

    async def _poll(self, check, async_check, signals, async_kwargs) -> tuple[bool, dict[str, Any]]:
        if async_check is not None:
            try:
                return await async_check(**self.kwargs, **async_kwargs)
            except signals[0]:
                pass  # this poll needs the plain check
        return await asyncio.to_thread(check, **self.kwargs)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # Importing a check's module can take a large part of a second: never on the event loop.
        check = await asyncio.to_thread(resolve_check, self.check)
        async_check, signals, fleet = None, (_NeverRaised, _NeverRaised), None
        if self.async_check:
            async_check = await asyncio.to_thread(resolve_check, self.async_check)
            fleet = await asyncio.to_thread(importlib.import_module, "triggers.fleet")
            signals = (fleet.UseSyncCheck, fleet.ResumeInWorker)
        loop = asyncio.get_running_loop()
        if fleet is not None:
            _ASYNC_WAITS[loop] = _ASYNC_WAITS.get(loop, 0) + 1
        try:
            async for event in self._polls(check, async_check, signals):
                yield event
        finally:
            # The last async wait of this loop closes the kept connections: a session of the migration's
            # own login left open on a migrated database makes the cutover's drain refuse to go on.
            if fleet is not None:
                _ASYNC_WAITS[loop] -= 1
                if _ASYNC_WAITS[loop] == 0:
                    await fleet.close_all()

    async def _polls(self, check, async_check, signals) -> AsyncIterator[TriggerEvent]:
        # The async check may keep state across the polls of one run (a copy: a new run starts afresh).
        async_kwargs = copy.deepcopy(self.async_kwargs)
        if self.jitter:
            await asyncio.sleep(random.uniform(0, self.poke_interval))
        attempts = 0
        while True:
            attempts += 1
            try:
                done, payload = await self._poll(check, async_check, signals, async_kwargs)
            except signals[1] as resume:
                yield TriggerEvent({"status": "resume", "message": str(resume), "attempts": attempts})
                return
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
            if attempts == 1 or attempts % 10 == 0:
                self.log.info("%s not done yet (check %d): %s", self.check, attempts, payload)
            await asyncio.sleep(self.poke_interval)
