"""AWS cutover steps outside the critical section: put source writes back (abort), switch DNS,
stop the source after a successful cutover.

Inside the critical section the cutover calls migration.aws directly (SecurityGroupWriteBlock,
upsert_cname); these operators serve the steps that run as tasks of their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowException

from hooks.aws import aws_client
from migration.aws import as_list, check_db_type, dns_change_in_sync, restore_source_writes, stop_db, upsert_cname
from triggers.poll import PollTrigger


class AwsRestoreSourceWritesOperator(BaseOperator):
    """Authorize again the inbound rules the write block revoked (``revoked``: the block's record,
    ``[{GroupId, IpPermissions}]``). Rules already present are skipped, so it is safe to rerun.
    Returns ``{restored}``: how many rules were added back.
    """

    template_fields: Sequence[str] = ("source_aws_conn_id", "revoked")
    ui_color = "#f4cccc"

    def __init__(self, *, source_aws_conn_id: str, revoked: Any, **kwargs: Any):
        super().__init__(**kwargs)
        self.source_aws_conn_id = source_aws_conn_id
        self.revoked = revoked

    def execute(self, context: Context) -> dict[str, int]:
        revoked = as_list(self.revoked, field="revoked")
        restored = restore_source_writes(aws_client(self.source_aws_conn_id, "ec2"), revoked)
        self.log.info("Restored %d inbound rule(s) of %d recorded", restored,
                      sum(len(g.get("IpPermissions", [])) for g in revoked))
        return {"restored": restored}


class AwsSwitchDnsOperator(BaseOperator):
    """UPSERT the CNAME ``record_name`` to ``target_host`` and wait (deferred) until Route53 has it
    INSYNC. Returns ``{change_id, status, previous, target}`` (``previous``: the old target, for
    switching back).
    """

    template_fields: Sequence[str] = ("aws_conn_id", "hosted_zone_id", "record_name", "target_host")
    ui_color = "#d9ead3"

    def __init__(self, *, aws_conn_id: str, hosted_zone_id: str, record_name: str, target_host: str,
                 ttl: int = 30, wait: bool = True, poll_interval: float = 5.0, wait_timeout: float = 900.0,
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.aws_conn_id = aws_conn_id
        self.hosted_zone_id = hosted_zone_id
        self.record_name = record_name
        self.target_host = target_host
        self.ttl = ttl
        self.wait = wait
        self.poll_interval = poll_interval
        self.wait_timeout = wait_timeout

    def execute(self, context: Context) -> dict[str, Any]:
        route53 = aws_client(self.aws_conn_id, "route53")
        change = upsert_cname(route53, hosted_zone_id=self.hosted_zone_id, record_name=self.record_name,
                              target_host=self.target_host, ttl=self.ttl)
        done, state = dns_change_in_sync(route53, change_id=change["change_id"])
        change["status"] = state["status"]
        if done or not self.wait:
            return change
        self.defer(
            trigger=PollTrigger(check="migration.aws:check_dns_change_in_sync",
                                kwargs={"aws_conn_id": self.aws_conn_id, "change_id": change["change_id"]},
                                poke_interval=self.poll_interval, timeout=self.wait_timeout),
            method_name="execute_complete", kwargs={"change": change},
            timeout=timedelta(seconds=self.wait_timeout))

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None,
                         change: dict[str, Any] | None = None) -> dict[str, Any]:
        if not event or event.get("status") != "success":
            raise AirflowException(f"{self.task_id}: Route53 change did not reach INSYNC: "
                                   f"{(event or {}).get('message', event)}")
        return {**(change or {}), "status": "INSYNC"}


class AwsStopSourceOperator(BaseOperator):
    """Stop the source cluster or instance after a successful cutover (nothing is deleted).
    Returns ``{db_identifier, status}``.
    """

    template_fields: Sequence[str] = ("source_aws_conn_id", "db_identifier")
    ui_color = "#d9ead3"

    def __init__(self, *, source_aws_conn_id: str, db_type: str, db_identifier: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.source_aws_conn_id = source_aws_conn_id
        self.db_type = check_db_type(db_type)
        self.db_identifier = db_identifier

    def execute(self, context: Context) -> dict[str, str]:
        status = stop_db(aws_client(self.source_aws_conn_id, "rds"), db_type=self.db_type,
                         identifier=self.db_identifier)
        return {"db_identifier": self.db_identifier, "status": status}
