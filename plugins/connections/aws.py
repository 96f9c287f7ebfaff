"""boto3 clients for an Airflow AWS connection, through the amazon provider's hooks.

``plugins/connections`` turns Airflow connection ids into clients: boto3 here, psycopg in ``postgres``.

One connection per account: cross-account access is the connection's own business (``role_arn``
in its extra), so the same code acts in the source or the target account by conn id alone.

Operator anatomy. The DMS operators act in the target account only and are the provider's
``AwsBaseOperator[DmsHook]`` (or subclass its DMS operators). The RDS, RAM, KMS and Route 53
operators (``operators/aws_*.py``) are ``BaseOperator`` subclasses that get their clients here,
through the same provider hooks, for a documented reason: most of them act in both accounts in one
task (sharing, the snapshot copy, preflight, cleanup: ``source_aws_conn_id`` and
``target_aws_conn_id``), while ``AwsBaseOperator`` holds one ``aws_conn_id`` and one hook; the
single-account ones keep the same anatomy, so every such task names its account the same way, and
the provider has no hook for RAM or Route 53 to build on.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from airflow.providers.amazon.aws.hooks.rds import RdsHook

from migration.aws.snapshot import RdsLogReader


def aws_client(aws_conn_id: str, service: str, *, region_name: str | None = None) -> Any:
    """A boto3 client for ``service`` acting as the connection ``aws_conn_id``."""
    if service == "rds":
        return RdsHook(aws_conn_id=aws_conn_id, region_name=region_name).conn
    return AwsBaseHook(aws_conn_id=aws_conn_id, client_type=service, region_name=region_name).conn


def rds_log_reader(aws_conn_id: str, instance_identifier: str, **kwargs: Any) -> RdsLogReader:
    """The ``log_reader`` for capture_clone_lsn on the RDS snapshot path: the restored instance's full log."""
    return RdsLogReader(aws_client(aws_conn_id, "rds"), instance_identifier, **kwargs)
