"""The AWS steps around the cutover that run as tasks of their own: lower the DNS record's TTL ahead of
it, and stop the source after it.

Inside the critical section the cutover calls migration.aws.cutover directly (SecurityGroupWriteBlock,
Route53TargetOpener); putting source writes back is the cutover's teardown (UnblockSourceWritesOperator)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger
from airflow.sdk import BaseOperator, Context

from connections.aws import aws_client
from migration.aws.common import check_db_type
from migration.aws.cutover import lower_record_ttl, stop_db


class Route53LowerTtlOperator(BaseOperator):
    """Lower the cutover's DNS record to ``ttl`` (``cutover.dns_ttl``) after proceed, then wait (deferred)
    one old TTL, so that no resolver still holds an answer with the old TTL when the cutover switches
    the record. Returns ``{record_name, old_ttl, ttl, changed, lowered_at}`` (the report shows both TTLs).

    A plain BaseOperator with ``connections.aws.aws_client``, like the RDS operators: the amazon
    provider has no Route 53 hook to build on.
    """

    template_fields: Sequence[str] = ("aws_conn_id", "hosted_zone_id", "record_name")
    ui_color = "#d9ead3"

    def __init__(self, *, aws_conn_id: str, hosted_zone_id: str, record_name: str, ttl: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.aws_conn_id = aws_conn_id
        self.hosted_zone_id = hosted_zone_id
        self.record_name = record_name
        self.ttl = ttl

    def execute(self, context: Context) -> dict[str, Any]:
        result = lower_record_ttl(aws_client(self.aws_conn_id, "route53"), hosted_zone_id=self.hosted_zone_id,
                                  record_name=self.record_name, ttl=self.ttl)
        result["lowered_at"] = datetime.now(UTC).isoformat()
        if not result["changed"]:
            return result
        self.log.info("DNS %s: TTL %s s -> %s s; waiting %s s so that no resolver holds the old TTL at the cutover",
                      self.record_name, result["old_ttl"], result["ttl"], result["old_ttl"])
        self.defer(trigger=TimeDeltaTrigger(timedelta(seconds=result["old_ttl"])), method_name="execute_complete",
                   kwargs={"result": result})

    def execute_complete(self, context: Context, event: Any = None, result: dict[str, Any] | None = None
                         ) -> dict[str, Any]:
        return result or {}


class RdsStopSourceOperator(BaseOperator):
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
