"""The cutover gate (human approval in the UI, or the automatic decision) and the guardrail re-check."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.providers.standard.triggers.temporal import DateTimeTrigger
from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowException

from migration import guardrails, naming
from operators.xcom_args import results_list


def _slots_by_database(source_conn_id: str, migration_id: str,
                       databases: Sequence[str]) -> tuple[dict[str, int], dict[str, dict[str, Any]]]:
    """Per database: the slot's lag in bytes, and what it retains on the source."""
    from connections.postgres import connect
    from migration.slots import replication_lag_bytes, slot_retention

    lags, retention = {}, {}
    for database in databases:
        with connect(source_conn_id, dbname=database) as conn:
            slot = naming.slot_name(migration_id, database)
            lags[database] = replication_lag_bytes(conn, slot)
            retention[database] = slot_retention(conn, slot)
    return lags, retention


def _validation_by_database(databases: Sequence[str], results: Any) -> dict[str, dict]:
    results = results_list(results)
    if all("database" in r for r in results):
        by_name = {r["database"]: r for r in results}
    else:  # mapped results come in the order of the run's databases
        by_name = dict(zip(databases, results, strict=False))
    return {db: by_name.get(db, {"failures": "no validation result"}) for db in databases}


class _GuardrailInputs:
    """What the gate and the re-check both read: the lag now, this run's validation results, the schema
    drift between source and target (when ``target_conn_id`` and ``schemas`` are given) and the window."""

    guard_fields = ("source_conn_id", "databases", "validation_results", "not_before", "not_after",
                    "target_conn_id", "schemas", "target_host", "target_port")

    def _set_guard_inputs(self, *, migration_id: str, source_conn_id: str, databases: Any, validation_results: Any,
                          max_lag_bytes: int, not_before: str | None, not_after: str | None,
                          target_conn_id: str | None = None, schemas: Any = None, target_host: str | None = None,
                          target_port: int | str | None = None) -> None:
        self.migration_id = migration_id
        self.source_conn_id = source_conn_id
        self.databases = databases
        self.validation_results = validation_results
        self.max_lag_bytes = max_lag_bytes
        self.not_before = not_before
        self.not_after = not_after
        self.target_conn_id = target_conn_id
        self.schemas = schemas
        self.target_host = target_host
        self.target_port = target_port

    def _drift(self) -> dict[str, list[str]] | None:
        if not self.target_conn_id or not self.schemas:
            return None
        from migration.endpoints import endpoint_override
        from triggers.checks import drift_by_database

        host, port = endpoint_override(self.target_host, self.target_port)
        return drift_by_database(source_conn_id=self.source_conn_id, target_conn_id=self.target_conn_id,
                                 databases=list(self.databases), schemas=list(self.schemas),
                                 target_host=host, target_port=port)

    def measure(self, context: Context) -> dict[str, Any]:
        """Everything the guardrails judge, measured now: keyword arguments of guardrails.problems/summary."""
        rails = guardrails.Guardrails(self.max_lag_bytes, self.not_before or None, self.not_after or None)
        lag, retention = _slots_by_database(self.source_conn_id, self.migration_id, self.databases)
        lag_read_at = datetime.now(UTC)  # the approval page shows it next to the lag
        return {"rails": rails, "lag_bytes": lag, "retention": retention,
                "validation": _validation_by_database(self.databases, self.validation_results),
                "drift": self._drift(), "run_id": (context or {}).get("run_id"), "now": lag_read_at}


class CutoverGateOperator(_GuardrailInputs, ApprovalOperator):
    """Asks a human to approve the cutover, showing lag, what this run's validation compared, schema drift
    between source and target, and the planned steps.

    With ``auto=True`` the same guardrails decide instead: all clear approves, anything else rejects.
    Rejecting skips the whole cutover and leaves the source untouched.
    """

    template_fields: Sequence[str] = (*ApprovalOperator.template_fields, *_GuardrailInputs.guard_fields)

    def __init__(self, *, migration_id: str, source_conn_id: str, databases: Any, validation_results: Any,
                 max_lag_bytes: int, not_before: str | None, not_after: str | None, steps: list[str],
                 auto: bool = False, target_conn_id: str | None = None, schemas: Any = None,
                 target_host: str | None = None, target_port: int | str | None = None, **kwargs: Any):
        kwargs.setdefault("subject", f"Approve the cutover of migration {migration_id}?")
        kwargs.setdefault("ignore_downstream_trigger_rules", True)
        super().__init__(**kwargs)
        self._set_guard_inputs(migration_id=migration_id, source_conn_id=source_conn_id, databases=databases,
                               validation_results=validation_results, max_lag_bytes=max_lag_bytes,
                               not_before=not_before, not_after=not_after, target_conn_id=target_conn_id,
                               schemas=schemas, target_host=target_host, target_port=target_port)
        self.steps = steps
        self.auto = auto

    def review(self, context: Context) -> tuple[str, list[str], datetime]:
        """(approval body, guardrail problems, time of measurement), as the gate shows and decides them."""
        measured = self.measure(context)
        body = guardrails.summary(**measured, steps=self.steps)
        return body, guardrails.problems(**measured), measured["now"]

    def execute(self, context: Context) -> Any:
        self.body, found, now = self.review(context)
        self.log.info("Cutover summary:\n%s", self.body)
        if not self.auto:
            return super().execute(context)
        for problem in found:
            self.log.warning("Guardrail: %s", problem)
        choice = self.REJECT if found else self.APPROVE
        self.log.info("Automatic decision: %s", choice)
        return self.execute_complete(context, event={
            "chosen_options": [choice], "params_input": {}, "responded_at": now,
            "responded_by_user": {"id": "guardrails", "name": "automatic approval"},
        })


class CheckGuardrailsOperator(_GuardrailInputs, BaseOperator):
    """Re-checks the guardrails after approval: waits (deferred) for the window to open, fails if it
    closed, if lag grew past the limit or if the schemas drifted apart (DDL on either side that CDC does
    not carry; refused until resolved). Nothing has been changed on the source at this point."""

    template_fields: Sequence[str] = _GuardrailInputs.guard_fields

    def __init__(self, *, migration_id: str, source_conn_id: str, databases: Any, validation_results: Any,
                 max_lag_bytes: int, not_before: str | None, not_after: str | None,
                 target_conn_id: str | None = None, schemas: Any = None, target_host: str | None = None,
                 target_port: int | str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self._set_guard_inputs(migration_id=migration_id, source_conn_id=source_conn_id, databases=databases,
                               validation_results=validation_results, max_lag_bytes=max_lag_bytes,
                               not_before=not_before, not_after=not_after, target_conn_id=target_conn_id,
                               schemas=schemas, target_host=target_host, target_port=target_port)

    def execute(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        if guardrails.window_state(datetime.now(UTC), self.not_before or None, self.not_after or None) == "early":
            self.log.info("Approved before the window opens; waiting until %s", self.not_before)
            self.defer(trigger=DateTimeTrigger(moment=datetime.fromisoformat(self.not_before)), method_name="execute")
        measured = self.measure(context)
        found = guardrails.problems(**measured)
        if found:
            raise AirflowException("Cutover stopped before any change to the source: " + "; ".join(found))
        self.log.info("Guardrails clear: lag %s, schema drift %s", measured["lag_bytes"], measured["drift"])
        return {"lag_bytes": measured["lag_bytes"], "checked_at": measured["now"].isoformat(),
                "schema_drift": measured["drift"]}
