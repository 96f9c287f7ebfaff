"""Base for the project's deferrable sensors: poke once inline, then defer to PollTrigger."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator, Context
from airflow.sdk.exceptions import AirflowException

from triggers.poll import PollTrigger, resolve_check


class DeferrablePollSensor(BaseSensorOperator):
    """Subclasses name a poll function (``poll_path``, in triggers.checks) and build its kwargs from the context.

    The first check runs in the worker so a condition that already holds costs no deferral;
    after that the wait holds no worker slot.
    """

    poll_path: str = ""
    # The async twin the triggerer runs instead (triggers.fleet), for waits many migrations hold at once.
    async_poll_path: str | None = None

    def __init__(self, *, poll_interval: float = 5.0, deferrable: bool = True, **kwargs: Any):
        kwargs.setdefault("timeout", 6 * 60 * 60)
        super().__init__(poke_interval=poll_interval, **kwargs)
        self.poll_interval = poll_interval
        self.deferrable = deferrable

    def poll_kwargs(self, context: Context) -> dict[str, Any]:
        raise NotImplementedError

    def async_poll_kwargs(self) -> dict[str, Any]:
        """Extra arguments for the async twin only."""
        return {}

    def poke(self, context: Context) -> bool:
        done, payload = resolve_check(self.poll_path)(**self.poll_kwargs(context))
        self.log.info("%s: %s", "ready" if done else "not ready", payload)
        if done:
            self._payload = payload
        return done

    def execute(self, context: Context) -> Any:
        kwargs = self.poll_kwargs(context)
        done, payload = resolve_check(self.poll_path)(**kwargs)
        if done:
            self.log.info("Ready: %s", payload)
            return payload
        self.log.info("Not ready yet, deferring: %s", payload)
        if not self.deferrable:
            super().execute(context)
            return getattr(self, "_payload", None)
        self.defer(
            trigger=PollTrigger(check=self.poll_path, kwargs=kwargs, poke_interval=self.poll_interval,
                                timeout=float(self.timeout) if self.timeout else None,
                                async_check=self.async_poll_path,
                                async_kwargs=self.async_poll_kwargs() if self.async_poll_path else None),
            method_name="execute_complete",
            timeout=timedelta(seconds=float(self.timeout)) if self.timeout else None,
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        if not event:
            raise AirflowException(f"{self.task_id}: the trigger returned no event")
        if event.get("status") == "resume":
            # The triggerer found work for a worker (a full pass, a recheck): check here, then wait again.
            self.log.info("Resumed in the worker: %s", event.get("message"))
            return self.execute(context)
        if event.get("status") == "success":
            self.log.info("Ready after %s checks: %s", event.get("attempts"), event.get("payload"))
            return event.get("payload")
        raise AirflowException(f"{self.task_id}: {event.get('message', event)}")
