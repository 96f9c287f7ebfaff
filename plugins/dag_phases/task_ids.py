"""Ids of the tasks and groups that other tasks refer to, and the XCom templates that read them."""

from __future__ import annotations

VALIDATE_RUN = "validate_run"
PROCEED = "proceed"

# Initial load: every path ends in WAIT_CLONE_AVAILABLE, whose XCom on AWS is the target's {host, port}.
SHARE_CLUSTER = "share_cluster"
CREATE_CLONE = "create_clone"
CREATE_SNAPSHOT = "create_snapshot"
COPY_SNAPSHOT = "copy_snapshot"
WAIT_CLONE_AVAILABLE = "wait_clone_available"
CAPTURE_CLONE_LSN = "capture_clone_lsn"

# Mapped per-database groups.
PREPARE_SOURCE = "prepare_source"
PREPARE_TARGET = "prepare_target"
START_CDC = "start_cdc"
WAIT_IN_SYNC = "wait_in_sync"

# DMS.
ENSURE_REPLICATION_INSTANCE = "ensure_replication_instance"
RESOLVE_START_LSN = "resolve_start_lsn"
ENSURE_SOURCE_ENDPOINT = "ensure_source_endpoint"
ENSURE_TARGET_ENDPOINT = "ensure_target_endpoint"
CREATE_CDC_TASK = "create_cdc_task"
WAIT_VALIDATION_CLEAN = "wait_validation_clean"

# Cutover and after.
CUTOVER = "cutover"
SWITCH_OVER = "switch_over"
CUTOVER_SWITCH_OVER = f"{CUTOVER}.{SWITCH_OVER}"
CLEANUP = "cleanup"


def in_group(group_id: str, task_id: str) -> str:
    """The full id of a task inside a task group."""
    return f"{group_id}.{task_id}"


def xcom(task_id: str, key: str) -> str:
    """A template for one key of another task's return value."""
    return f"{{{{ ti.xcom_pull(task_ids='{task_id}')['{key}'] }}}}"


def xcom_if_any(task_id: str, key: str) -> str:
    """As ``xcom``, but renders "None" when that task has no return value (it never ran in this run)."""
    return f"{{{{ (ti.xcom_pull(task_ids='{task_id}') or {{}}).get('{key}') }}}}"


def mapped_xcom(task_id: str, key: str | None = None) -> str:
    """A value from the same map index of another task of this mapped group."""
    pick = f"['{key}']" if key else ""
    return f"{{{{ ti.xcom_pull(task_ids='{task_id}', map_indexes=ti.map_index){pick} }}}}"


def run_setting(key: str, suffix: str = "") -> str:
    """A template for one of the run's settings, which `validate_run` pushes under its own key."""
    return f"{{{{ ti.xcom_pull(task_ids='{VALIDATE_RUN}', key='{key}'){suffix} }}}}"
