"""AWS cleanup: take back what the migration shared; runs on failure too and never touches source data."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowException

from connections.aws import aws_client
from migration.aws.common import check_account_id
from migration.aws.sharing import delete_resource_share, revoke_key_from_account
from migration.aws.snapshot import unshare_db_snapshot
from migration.naming import ram_share_name


class AwsCleanupOperator(BaseOperator):
    """Remove the RAM share (by name) and the one key-policy statement this migration added, and
    unshare the source snapshot. The target's rds.logical_replication stays as the migration set it
    (off once the clone's slots are gone): the target is the new primary and needs no logical decoding.

    Every step runs even when an earlier one fails, and each is a no-op when there is nothing to
    remove, so it runs as a teardown (trigger rule ``all_done``) and reruns safely. Source
    databases, snapshots and slots are never deleted (slots belong to the PostgreSQL cleanup).
    Returns what it removed.
    """

    template_fields: Sequence[str] = ("source_aws_conn_id", "target_account_id", "share_name", "source_kms_key_id",
                                      "source_snapshot_identifier")
    ui_color = "#eeeeee"

    def __init__(self, *, source_aws_conn_id: str, migration_id: str,
                 target_account_id: str, share_name: str | None = None, remove_share: bool = True,
                 source_kms_key_id: str | None = None, source_snapshot_identifier: str | None = None,
                 **kwargs: Any):
        kwargs.setdefault("trigger_rule", "all_done")
        super().__init__(**kwargs)
        self.source_aws_conn_id = source_aws_conn_id
        self.migration_id = migration_id
        self.target_account_id = target_account_id
        self.share_name = share_name
        self.remove_share = remove_share
        self.source_kms_key_id = source_kms_key_id
        self.source_snapshot_identifier = source_snapshot_identifier

    def execute(self, context: Context) -> dict[str, Any]:
        account = check_account_id(self.target_account_id, field="target_account_id")
        done: dict[str, Any] = {"deleted_shares": [], "kms_statement_removed": False, "snapshot_unshared": False}
        errors: list[str] = []

        def step(key: str, what: str, action: Callable[[], Any]) -> None:
            try:
                done[key] = action()
            except Exception as exc:  # noqa: BLE001 - the remaining steps must still run
                self.log.exception("Cleanup step failed: %s", what)
                errors.append(f"{what}: {type(exc).__name__}: {exc}")

        if self.remove_share:
            name = self.share_name or ram_share_name(self.migration_id)
            step("deleted_shares", f"delete RAM share {name}",
                 lambda: delete_resource_share(aws_client(self.source_aws_conn_id, "ram"), name=name))
        if self.source_kms_key_id:
            step("kms_statement_removed",
                 f"remove the key-policy statement for {account} from {self.source_kms_key_id}",
                 lambda: revoke_key_from_account(aws_client(self.source_aws_conn_id, "kms"),
                                                 key_id=self.source_kms_key_id, account_id=account))
        if self.source_snapshot_identifier:
            step("snapshot_unshared", f"unshare snapshot {self.source_snapshot_identifier}",
                 lambda: unshare_db_snapshot(aws_client(self.source_aws_conn_id, "rds"),
                                             snapshot_identifier=self.source_snapshot_identifier,
                                             account_id=account))
        if errors:
            raise AirflowException(f"{self.task_id}: {len(errors)} cleanup step(s) failed (the others ran): "
                                   + "; ".join(errors))
        return done
