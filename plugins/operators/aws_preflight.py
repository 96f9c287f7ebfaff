"""AWS preflight: engine and version, logical replication, KMS keys, region, WAL headroom."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context

from connections.aws import aws_client
from migration.aws.common import CLUSTER
from migration.aws.cutover import dns_ttl_facts
from migration.aws.preflight import (
    AwsPreflightChecks,
    PreflightFailed,
    aurora_lsn_function_problem,
    dms_account_role_problems,
    planned_logical_replication_change,
    preflight,
)


class AwsPreflightOperator(BaseOperator):
    """Check the AWS side before anything is created; raise one error listing every problem and its fix.

    Checks: engine and version (Aurora PostgreSQL >= 11.9, RDS PostgreSQL >= 11), the source is
    available, rds.logical_replication=1 applied in its parameter group, its KMS key is customer
    managed (and matches ``source_kms_key_id``), both connections and the source are in one
    region, the target KMS key exists, the target parameter group exists and holds
    rds.logical_replication=1 (the clone starts with the copied slots), the target identifier is free (or this
    migration's), the writer's free storage (CloudWatch) is at least ``min_free_storage_bytes``,
    and for Aurora that ``aurora_volume_logical_start_lsn()`` exists (SQL on the source, when
    ``source_postgres_conn_id`` is given). With ``cdc_engine="dms"``: the DMS account roles
    ``dms-vpc-role`` and ``dms-cloudwatch-logs-role`` exist in the target account (iam:GetRole).
    With ``dns_zone_id``: the cutover's DNS record's TTL, with a warning (logged, and under
    ``dns.warning`` in the facts) when it is over 60 s; resolvers keep the old answer that long.

    Read-only, so a dry run changes nothing. With ``set_logical_replication`` and
    rds.logical_replication as the only problem, it does not fail: the facts it returns list the
    change under ``planned_changes``, and the factory's ``source_logical_replication_on`` task
    (after ``proceed``) sets the parameter and reboots the writer. Returns the facts (source
    description, key ARNs, region, free storage) for XCom.
    """

    template_fields: Sequence[str] = ("source_aws_conn_id", "target_aws_conn_id", "source_postgres_conn_id",
                                      "database", "dns_zone_id", "dns_record_name")
    ui_color = "#f4cccc"

    def __init__(
        self,
        *,
        source_aws_conn_id: str,
        target_aws_conn_id: str,
        checks: AwsPreflightChecks,
        set_logical_replication: bool = False,
        source_postgres_conn_id: str | None = None,
        database: str | None = None,
        cdc_engine: str = "native",
        dns_zone_id: str | None = None,
        dns_record_name: str | None = None,
        dns_ttl: int = 30,
        **kwargs: Any,
    ):
        """``checks``: what to check, built from the YAML by the DAG factory; the rest says how to reach it."""
        super().__init__(**kwargs)
        if not isinstance(checks, AwsPreflightChecks):
            raise TypeError(f"checks: expected an AwsPreflightChecks, got {type(checks).__name__}")
        self.checks = checks
        self.dns_zone_id = dns_zone_id
        self.dns_record_name = dns_record_name
        self.dns_ttl = dns_ttl
        self.source_aws_conn_id = source_aws_conn_id
        self.target_aws_conn_id = target_aws_conn_id
        self.set_logical_replication = set_logical_replication
        self.source_postgres_conn_id = source_postgres_conn_id
        self.database = database
        if cdc_engine not in ("native", "dms"):
            raise ValueError(f"cdc_engine: expected 'native' or 'dms', got {cdc_engine!r}")
        self.cdc_engine = cdc_engine

    def _check(self):
        result = preflight(
            source_rds=aws_client(self.source_aws_conn_id, "rds"),
            source_kms=aws_client(self.source_aws_conn_id, "kms"),
            source_cloudwatch=aws_client(self.source_aws_conn_id, "cloudwatch"),
            target_rds=aws_client(self.target_aws_conn_id, "rds"),
            target_kms=aws_client(self.target_aws_conn_id, "kms"),
            checks=self.checks,
        )
        if self.checks.db_type == CLUSTER.db_type and self.source_postgres_conn_id:
            from connections.postgres import connect

            with connect(self.source_postgres_conn_id, dbname=self.database or None) as conn:
                problem = aurora_lsn_function_problem(conn)
            if problem:
                result.problems.append(problem)
        if self.cdc_engine == "dms":
            result.problems += dms_account_role_problems(aws_client(self.target_aws_conn_id, "iam"))
        return result

    def execute(self, context: Context) -> dict[str, Any]:
        result = self._check()
        if self.dns_zone_id and self.dns_record_name:
            dns = dns_ttl_facts(aws_client(self.target_aws_conn_id, "route53"), hosted_zone_id=self.dns_zone_id,
                                record_name=self.dns_record_name, cutover_ttl=self.dns_ttl)
            result.facts["dns"] = dns
            if dns["warning"]:
                self.log.warning("%s", dns["warning"])
        if not result.problems:
            return {**result.facts, "planned_changes": []}
        if not (self.set_logical_replication and result.only_logical_replication):
            raise PreflightFailed(result.problems)
        planned = planned_logical_replication_change(result.facts["source"])
        self.log.info("Planned after proceed (set_logical_replication): %s", planned)
        return {**result.facts, "planned_changes": [planned]}
