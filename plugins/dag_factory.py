"""Builds one migration DAG from one YAML file: `migrate__<migration_id>`.

Each DAG holds only its own path's tasks, chosen here at build time from the initial load and the
CDC engine. Per-database work runs in task groups mapped over the run's databases. Building a
DAG reads its YAML and nothing else: no connection, database or AWS call happens at parse time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, Param, chain, task, task_group

from migration import naming
from migration.config import ConfigError, MigrationConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MIGRATIONS_DIR = ROOT / "include" / "migrations"


def migrations_dir() -> Path:
    """Where the migration YAML files live (MIGRATIONS_DIR overrides, e.g. for tests)."""
    return Path(os.environ.get("MIGRATIONS_DIR", DEFAULT_MIGRATIONS_DIR))


def config_for_dag_file(dag_file: str) -> MigrationConfig:
    """The YAML that belongs to a DAG file named migrate__<migration_id>.py."""
    stem = Path(dag_file).stem
    if not stem.startswith("migrate__"):
        raise ConfigError(dag_file, "(file name)", "a migration DAG file must be named migrate__<migration_id>.py")
    return load_config(migrations_dir() / f"{stem.removeprefix('migrate__')}.yaml")


def per_database_plan(config: MigrationConfig, databases: list[str], schemas: list[str]) -> list[dict[str, Any]]:
    """Arguments of each mapped per-database task group: the database and every name derived from it."""
    return [
        {
            "database": db,
            "schemas": schemas,
            "slot_name": naming.slot_name(config.migration_id, db),
            "publication": naming.publication_name(config.migration_id, db),
            "subscription": naming.subscription_name(config.migration_id, db),
        }
        for db in databases
    ]


CUTOVER_STEPS = [
    "re-check the guardrails (window, lag, validation)",
    "block writes on the source (recorded so they can be restored)",
    "wait until no transaction is open and CDC has applied past the source's final LSN",
    "stop CDC",
    "sync sequences from the source",
    "re-enable the target's triggers",
    "open the target",
]


def _doc(config: MigrationConfig) -> str:
    return f"""
### Migration `{config.migration_id}`

{config.description}

| | |
|---|---|
| platform | {config.platform} |
| initial load | {config.initial_load} |
| CDC engine | {config.cdc_engine} |
| databases | {', '.join(config.databases)} |
| schemas | {', '.join(config.schemas)} |
| approval | {config.cutover.approval} |
| config | `{config.path}` |

Trigger with the form to pick databases, schemas and the cutover window; **dry run** runs the
preflight checks only. Every task is safe to rerun. A failure after writes are blocked and before
the target opens restores source writes; the `unblock_source_writes` teardown makes sure of it.
"""


def build_dag(config: MigrationConfig) -> DAG:
    """The DAG for one migration config."""
    params = {name: Param(**spec) for name, spec in config.params_spec().items()}
    dag = DAG(
        dag_id=config.dag_id,
        description=config.description or f"Migrate {', '.join(config.databases)} ({config.initial_load} + {config.cdc_engine})",
        doc_md=_doc(config),
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        params=params,
        tags=["migration", f"platform:{config.platform}", f"load:{config.initial_load}", f"cdc:{config.cdc_engine}"],
        default_args={"owner": config.owner, "retries": 0},
        render_template_as_native_obj=True,
    )
    with dag:
        _build_tasks(config)
    return dag


def _build_tasks(config: MigrationConfig) -> None:
    from operators.clone_lsn import CaptureCloneLsnOperator
    from operators.cutover import CutoverOperator, UnblockSourceWritesOperator
    from operators.cutover_gate import CheckGuardrailsOperator, CutoverGateOperator
    from operators.native_cdc import CreatePublicationOperator, CreateSubscriptionOperator
    from operators.preflight import PreflightOperator
    from operators.replication_slot import CreateReplicationSlotOperator, DropCopiedSlotsOperator
    from operators.report import MigrationReportOperator, SourceSlotCleanupOperator
    from operators.target_prep import CreateControlSchemaOperator, DisableTargetTriggersOperator
    from sensors.cdc_lag import CdcLagSensor
    from sensors.validation import ValidationCleanSensor

    src, tgt = config.source.conn_id, config.target.conn_id
    first_db = "{{ ti.xcom_pull(task_ids='validate_run', key='databases')[0] }}"

    @task
    def validate_run(**context: Any) -> list[dict[str, Any]]:
        """Validate the run's parameters against the migration before anything is created."""
        run = config.run_settings(dict(context["params"]))
        ti = context["ti"]
        for key, value in vars(run).items():
            ti.xcom_push(key=key, value=value)
        return per_database_plan(config, run.databases, run.schemas)

    plan = validate_run()
    databases = plan["databases"]

    preflight = PreflightOperator.partial(
        task_id="preflight", source_conn_id=src, engine=config.cdc_engine,
        max_xact_age_s=config.max_transaction_age_seconds,
        allow_replica_identity_full=config.allow_replica_identity_full,
    ).expand_kwargs(plan.map(preflight_kwargs))

    @task.short_circuit(ignore_downstream_trigger_rules=True)
    def proceed(**context: Any) -> bool:
        """Stop here on a dry run: the checks passed and nothing was created."""
        return not context["ti"].xcom_pull(task_ids="validate_run", key="dry_run")

    @task_group(group_id="prepare_source")
    def prepare_source(database: str, schemas: list[str], slot_name: str, publication: str, subscription: str):
        """Control schema, publication (native) and the logical slot, per database, before the clone."""
        control = CreateControlSchemaOperator(task_id="create_source_control_schema", conn_id=src,
                                              database=database, control_schema=config.control_schema)
        steps = [control]
        if config.cdc_engine == "native":
            steps.append(CreatePublicationOperator(task_id="create_publication", source_conn_id=src,
                                                   database=database, publication=publication, schemas=schemas))
        steps.append(CreateReplicationSlotOperator(task_id="create_slot", source_conn_id=src, database=database,
                                                   slot_name=slot_name, engine=config.cdc_engine,
                                                   wait_for_xacts_s=config.max_transaction_age_seconds))
        chain(*steps)

    source_ready = prepare_source.expand_kwargs(plan)

    initial_load, clone_ready, capture = _initial_load(config, first_db, CaptureCloneLsnOperator)

    drop_slots = DropCopiedSlotsOperator(task_id="drop_copied_slots", target_conn_id=tgt, database=first_db)

    @task_group(group_id="prepare_target")
    def prepare_target(database: str, schemas: list[str], slot_name: str, publication: str, subscription: str):
        """Control schema and disabled user triggers (the exact enable DDL is saved), per database."""
        chain(
            CreateControlSchemaOperator(task_id="create_target_control_schema", conn_id=tgt, database=database,
                                        control_schema=config.control_schema),
            DisableTargetTriggersOperator(task_id="disable_target_triggers", target_conn_id=tgt, database=database,
                                          schemas=schemas, control_schema=config.control_schema),
        )

    target_ready = prepare_target.expand_kwargs(plan)

    captured_lsn = "{{ ti.xcom_pull(task_ids='capture_clone_lsn')['lsn'] }}"

    @task_group(group_id="start_cdc")
    def start_cdc(database: str, schemas: list[str], slot_name: str, publication: str, subscription: str):
        """Start change data capture from exactly the clone's LSN, per database."""
        CreateSubscriptionOperator(task_id="create_subscription", source_conn_id=src, target_conn_id=tgt,
                                   database=database, subscription=subscription, publication=publication,
                                   slot_name=slot_name, captured_lsn=captured_lsn)

    cdc_started = start_cdc.expand_kwargs(plan)

    @task_group(group_id="wait_in_sync")
    def wait_in_sync(database: str, schemas: list[str], slot_name: str, publication: str, subscription: str):
        """Deferred waits: CDC lag under the limit, then a clean validation, per database."""
        lag = CdcLagSensor(task_id="wait_cdc_lag", source_conn_id=src, target_conn_id=tgt, database=database,
                           slot_name=slot_name, subscription=subscription,
                           max_lag_bytes=config.cutover.max_lag_bytes,
                           max_apply_age_seconds=config.cutover.max_apply_age_seconds,
                           control_schema=config.control_schema, poll_interval=2)
        clean = ValidationCleanSensor(task_id="wait_validation_clean", source_conn_id=src, target_conn_id=tgt,
                                      database=database, schemas=schemas, validation_id=config.migration_id,
                                      control_schema=config.control_schema, chunk_rows=config.validation.chunk_rows,
                                      max_rechecks=config.validation.max_rechecks, poll_interval=2)
        lag >> clean

    in_sync = wait_in_sync.expand_kwargs(plan)
    # The mapped validation sensors' results, in the order of the run's databases.
    validation_results = in_sync.get_child_by_label("wait_validation_clean").output

    with _cutover_group():
        window = {"not_before": "{{ ti.xcom_pull(task_ids='validate_run', key='cutover_not_before') or '' }}",
                  "not_after": "{{ ti.xcom_pull(task_ids='validate_run', key='cutover_not_after') or '' }}"}
        gate = CutoverGateOperator(
            task_id="approve_cutover", migration_id=config.migration_id, source_conn_id=src, databases=databases,
            validation_results=validation_results, max_lag_bytes=config.cutover.max_lag_bytes, steps=CUTOVER_STEPS,
            auto=config.cutover.approval == "auto", **window,
        )
        guard = CheckGuardrailsOperator(
            task_id="check_guardrails", migration_id=config.migration_id, source_conn_id=src, databases=databases,
            validation_results=validation_results, max_lag_bytes=config.cutover.max_lag_bytes, **window,
        )
        switch = CutoverOperator(
            task_id="switch_over", migration_id=config.migration_id, source_conn_id=src, target_conn_id=tgt,
            databases=databases, schemas=plan_schemas(), control_schema=config.control_schema,
            replication_role=f"{{{{ conn['{src}'].login }}}}", application_roles=list(config.cutover.application_roles),
            drain_timeout_seconds=config.cutover.drain_timeout_seconds,
        )
        # Teardown of the critical section: after a failure (even a lost worker) it restores source
        # writes; once the target is open it leaves the fence in place.
        unblock = UnblockSourceWritesOperator(
            task_id="unblock_source_writes", migration_id=config.migration_id, source_conn_id=src,
            control_database=first_db, control_schema=config.control_schema,
            doc_md="Restores source writes if a cutover left them blocked; changes nothing once the target is open.",
        )
        chain(gate, guard, switch, unblock.as_teardown(setups=guard))

    # Teardowns: they run however the run ends, and a reject or dry run does not skip them.
    cleanup = SourceSlotCleanupOperator(
        task_id="cleanup", source_conn_id=src, plan=plan, cutover_task_id="cutover.switch_over",
    ).as_teardown(setups=plan)
    report = MigrationReportOperator(
        task_id="report", migration_id=config.migration_id, config_summary={
            "initial_load": config.initial_load, "cdc_engine": config.cdc_engine, "platform": config.platform},
        databases=databases, validation_results=validation_results, cutover_task_id="cutover.switch_over",
        cleanup_task_id="cleanup", target_conn_id=tgt, control_schema=config.control_schema,
    ).as_teardown(setups=plan)
    chain(plan, preflight, proceed(), source_ready, initial_load)
    chain(clone_ready, capture, drop_slots, target_ready, cdc_started, in_sync, gate)
    chain(switch, cleanup, report)


def preflight_kwargs(item: dict[str, Any]) -> dict[str, Any]:
    """PreflightOperator's mapped arguments from one per-database plan entry."""
    return {"database": item["database"], "schemas": item["schemas"], "slot_names": [item["slot_name"]]}


def plan_schemas() -> Any:
    """The run's schemas (validated), for tasks outside the mapped groups."""
    return "{{ ti.xcom_pull(task_ids='validate_run', key='schemas') }}"  # native rendering keeps the list


def _cutover_group():
    from airflow.sdk import TaskGroup

    return TaskGroup(group_id="cutover", tooltip="Gate, guardrails and the critical section")


def _initial_load(config: MigrationConfig, first_db: str, capture_cls: type):
    """Tasks of the initial load for this config's path: (first task, clone-ready task, capture task)."""
    if config.initial_load == "pg_basebackup":
        from migration.local_clone import clone_logfile
        from operators.local_clone import LocalCloneOperator
        from sensors.clone_available import CloneAvailableSensor

        clone = LocalCloneOperator(task_id="clone_source", source_conn_id=config.source.conn_id,
                                   data_directory=config.target.data_directory,
                                   port=config.target.port or f"{{{{ conn['{config.target.conn_id}'].port }}}}")
        wait = CloneAvailableSensor(task_id="wait_clone_available", target_conn_id=config.target.conn_id,
                                    dbname=first_db, poll_interval=1)
        capture = capture_cls(task_id="capture_clone_lsn", target_conn_id=config.target.conn_id, database=first_db,
                              method="redo_done_at", log_path=str(clone_logfile(config.target.data_directory)))
        clone >> wait
        return clone, wait, capture
    raise NotImplementedError(f"initial_load {config.initial_load} is not wired yet")


def dag_for_file(dag_file: str) -> DAG:
    """Entry point of the thin files in dags/: the DAG for migrate__<id>.py's own YAML."""
    return build_dag(config_for_dag_file(dag_file))

