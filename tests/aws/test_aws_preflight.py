"""AWS preflight: every failure names the resource and the fix, nothing is created or changed, and
with set_logical_replication the parameter change and writer reboot are only planned: the task after
`proceed` (RdsSetLogicalReplicationOperator) makes them, so a dry run changes nothing.

Stand-ins:
- AWS managed keys: moto reports every key, aws/rds included, as KeyManager CUSTOMER; the test
  marks the source key as AWS managed in moto's KMS backend (`standins.mark_aws_managed`).
- aurora_volume_logical_start_lsn(): Aurora's built-in does not exist in PostgreSQL; one test
  creates a function of that name on the real source server to stand for an Aurora minor version
  that has it (the check looks the function up; it never calls it).
Moto's own gaps here need no stand-in: parameter groups start empty, which the check reads as
the engine default (rds.logical_replication=0), and a reboot leaves the instance available.
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from conftest import REGION, SOURCE_ACCOUNT, TARGET_ACCOUNT, aws_conn_uri, make_world, postgres_conn_uri, run_operator

from connections.aws import aws_client
from migration.aws.common import DbDescription
from migration.aws.parameters import get_parameter
from migration.aws.preflight import (
    AwsPreflightChecks,
    PreflightFailed,
    engine_problem,
    logical_replication_problem,
    preflight,
)
from operators.aws_preflight import AwsPreflightOperator

pytestmark = [pytest.mark.aws, pytest.mark.usefixtures("record_aws_calls")]

IAM_DIR = Path(__file__).resolve().parents[2] / "include" / "iam"


@pytest.fixture(scope="module")
def source_pg(pg_servers):
    return pg_servers.new("preflight-src")


def preflight_operator(world, **overrides):
    """The operator as the DAG factory builds it; an override of a check field goes into its checks."""
    checks = dict(migration_id="orders", db_type=world["db_type"], source_identifier=world["source_id"],
                  source_kms_key_id=world["source_key_arn"], target_kms_key_id=world["target_key_arn"],
                  target_identifier="orders-tgt", target_parameter_group=world["target_parameter_group"])
    fields = set(AwsPreflightChecks.__dataclass_fields__)
    checks.update({key: value for key, value in overrides.items() if key in fields})
    rest = {key: value for key, value in overrides.items() if key not in fields}
    return AwsPreflightOperator(task_id="preflight_aws", source_aws_conn_id="aws_source",
                                target_aws_conn_id="aws_target", checks=AwsPreflightChecks(**checks), **rest)


def desc(**overrides) -> DbDescription:
    base = dict(db_type="cluster", identifier="orders-src",
                arn=f"arn:aws:rds:{REGION}:{SOURCE_ACCOUNT}:cluster:orders-src",
                engine="aurora-postgresql", engine_version="13.7", status="available",
                parameter_group="src-cluster-params", parameter_apply_status="in-sync", writer_instance="orders-src-1",
                kms_key_id=None, storage_encrypted=False, host="h", port=5432)
    return DbDescription(**{**base, **overrides})


def test_aurora_source_passes_once_the_lsn_function_exists(admin, standins, source_pg, monkeypatch):
    world = make_world(admin, db_type="cluster")
    monkeypatch.setenv("AIRFLOW_CONN_PG_SOURCE", postgres_conn_uri(source_pg))
    with pytest.raises(PreflightFailed) as failed:
        run_operator(preflight_operator(world, source_postgres_conn_id="pg_source", database="postgres"))
    assert failed.value.problems == [
        "aurora_volume_logical_start_lsn() is not available on the source: apply the latest minor version of its "
        "Aurora PostgreSQL major version (the function ships in the highest minor of each major)"]

    with psycopg.connect(source_pg.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE FUNCTION aurora_volume_logical_start_lsn() RETURNS pg_lsn LANGUAGE sql "
                     "AS 'SELECT pg_current_wal_lsn()'")
    try:
        facts = run_operator(preflight_operator(world, source_postgres_conn_id="pg_source", database="postgres"))
    finally:
        with psycopg.connect(source_pg.conninfo(), autocommit=True) as conn:
            conn.execute("DROP FUNCTION aurora_volume_logical_start_lsn()")
    assert facts["source"]["arn"] == world["source_arn"]
    assert facts["source"]["writer_instance"] == "orders-src-1"
    assert facts["logical_replication"] == "1"
    assert (facts["source_kms_key_arn"], facts["target_kms_key_arn"]) == (world["source_key_arn"],
                                                                          world["target_key_arn"])
    assert facts["region"] == REGION
    assert facts["free_storage_bytes"] == 50 * 1024 ** 3
    json.dumps(facts)  # a small XCom


def test_dms_needs_its_account_roles_in_the_target_account(admin, standins):
    world = make_world(admin, db_type="cluster")
    assert run_operator(preflight_operator(world))["planned_changes"] == []  # the native engine needs no roles
    roles = {"dms-vpc-role": "AmazonDMSVPCManagementRole", "dms-cloudwatch-logs-role": "AmazonDMSCloudWatchLogsRole"}
    for role in roles:  # in the source account they do not count
        admin("iam").create_role(RoleName=role, AssumeRolePolicyDocument=(IAM_DIR / f"{role}.json").read_text())
    with pytest.raises(PreflightFailed) as failed:
        run_operator(preflight_operator(world, cdc_engine="dms"))
    assert failed.value.problems == [
        f"IAM role {role} does not exist in the target account; DMS needs it (cdc_engine: dms): create it once per "
        f"account with `aws iam create-role --role-name {role} --assume-role-policy-document "
        f"file://include/iam/{role}.json` and `aws iam attach-role-policy --role-name {role} --policy-arn "
        f"arn:aws:iam::aws:policy/service-role/{policy}`" for role, policy in roles.items()]

    # Created as the message says (the documents shipped in include/iam/), preflight passes.
    iam = admin("iam", TARGET_ACCOUNT)
    for role in roles:
        document = json.loads((IAM_DIR / f"{role}.json").read_text())
        assert document["Statement"] == [{"Effect": "Allow", "Principal": {"Service": "dms.amazonaws.com"},
                                          "Action": "sts:AssumeRole"}]
        iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(document))
    assert run_operator(preflight_operator(world, cdc_engine="dms"))["planned_changes"] == []
    with pytest.raises(ValueError, match="cdc_engine: expected 'native' or 'dms', got 'dsm'"):
        preflight_operator(world, cdc_engine="dsm")


def test_every_problem_is_named_with_its_fix_and_nothing_changes(admin, standins):
    world = make_world(admin, db_type="cluster", engine_version="11.7", logical_replication="0",
                       free_storage_bytes=2 * 1024 ** 3)
    standins.mark_aws_managed(SOURCE_ACCOUNT, world["source_key_id"])
    other_key = admin("kms").create_key()["KeyMetadata"]["Arn"]
    admin("rds", TARGET_ACCOUNT).create_db_cluster(DBClusterIdentifier="orders-tgt", Engine="aurora-postgresql",
                                                   MasterUsername="postgres", MasterUserPassword="not-a-secret")
    policy = admin("kms").get_key_policy(KeyId=world["source_key_id"], PolicyName="default")["Policy"]

    with pytest.raises(PreflightFailed) as failed:
        run_operator(preflight_operator(world, source_kms_key_id=other_key, target_kms_key_id="alias/missing",
                                        target_parameter_group="no-such-group", set_logical_replication=True))
    problems = failed.value.problems
    expected = [
        "DB cluster orders-src runs aurora-postgresql 11.7; CDC from it needs 11.9 or later: upgrade it "
        "(aws rds modify-db-cluster --db-cluster-identifier orders-src --engine-version <newer version> "
        "--apply-immediately)",
        "rds.logical_replication is 0 in DB cluster parameter group src-cluster-params of DB cluster orders-src: "
        "run `aws rds modify-db-cluster-parameter-group --db-cluster-parameter-group-name src-cluster-params "
        "--parameters ParameterName=rds.logical_replication,ParameterValue=1,ApplyMethod=pending-reboot`, then "
        "reboot the writer (aws rds reboot-db-instance --db-instance-identifier orders-src-1); or set "
        "set_logical_replication: true in the migration config to let the migration do both",
        f"DB cluster orders-src is encrypted with the AWS managed KMS key {world['source_key_arn']} (aws/rds), which "
        "cannot be shared with another account: copy a snapshot with a customer managed key, restore it and "
        "migrate from that copy",
        f"target KMS key alias/missing was not found with the target connection: create it in the target account "
        f"({REGION}) or fix target.kms_key_id",
        "DB cluster parameter group no-such-group does not exist in the target account: create it (family "
        "aurora-postgresql11, rds.logical_replication=1) or fix target.parameter_group",
        "DB cluster orders-tgt already exists in the target account and was not made by this migration: choose "
        "another target identifier or delete it",
    ]
    assert problems[:6] == expected
    assert problems[6].startswith("FreeLocalStorage of DB instance orders-src-1 fell to 2.0 GiB in the last 30 "
                                  "minutes; the migration wants 10.0 GiB free")
    assert len(problems) == 7
    # Nothing was created or changed, although set_logical_replication was on (other problems stop it).
    source_rds = aws_client("aws_source", "rds")
    assert get_parameter(source_rds, db_type="cluster", parameter_group="src-cluster-params",
                         name="rds.logical_replication") == "0"
    assert admin("kms").get_key_policy(KeyId=world["source_key_id"], PolicyName="default")["Policy"] == policy
    assert admin("ram").get_resource_shares(resourceOwner="SELF")["resourceShares"] == []

    # A key that is not the cluster's, while the cluster's own key is fine, is named as a mismatch too.
    standins.reset()
    from moto.kms.models import kms_backends

    kms_backends[SOURCE_ACCOUNT][REGION].keys[world["source_key_id"]].key_manager = "CUSTOMER"
    result = preflight(source_rds=source_rds, source_kms=aws_client("aws_source", "kms"),
                       source_cloudwatch=aws_client("aws_source", "cloudwatch"),
                       target_rds=aws_client("aws_target", "rds"), target_kms=aws_client("aws_target", "kms"),
                       checks=AwsPreflightChecks(db_type="cluster", source_identifier="orders-src",
                                                 source_kms_key_id=other_key, min_free_storage_bytes=0))
    assert f"source.kms_key_id is {other_key}, but DB cluster orders-src is encrypted with " \
           f"{world['source_key_arn']}: set source.kms_key_id to {world['source_key_arn']}" in result.problems


def test_a_dump_takes_a_source_encrypted_with_the_aws_managed_key(admin, standins):
    """pg_dump shares nothing with the target account: the aws/rds key that stops a clone is no problem."""
    world = make_world(admin, db_type="instance")
    standins.mark_aws_managed(SOURCE_ACCOUNT, world["source_key_id"])
    clone_checks = dict(target_identifier=None, target_parameter_group=None, source_kms_key_id=None,
                        target_kms_key_id=None)
    with pytest.raises(PreflightFailed, match=r"encrypted with the AWS managed KMS key .* \(aws/rds\)"):
        run_operator(preflight_operator(world, **clone_checks))
    facts = run_operator(preflight_operator(world, **clone_checks, shares_storage=False))
    assert facts["source_kms_key_arn"] == world["source_key_arn"]


@pytest.mark.safety
@pytest.mark.parametrize("db_type", ["cluster", "instance"])
def test_preflight_only_plans_logical_replication_and_the_task_after_proceed_sets_it(admin, standins, db_type,
                                                                                   record_aws_calls):
    from operators.aws_clone import RdsSetLogicalReplicationOperator

    world = make_world(admin, db_type=db_type, logical_replication="0")
    group_kind = "DB cluster parameter group" if db_type == "cluster" else "DB parameter group"
    with pytest.raises(PreflightFailed,
                       match=f"rds.logical_replication is 0 in {group_kind} {world['parameter_group']}"):
        run_operator(preflight_operator(world))
    source_rds = aws_client("aws_source", "rds")

    def value():
        return get_parameter(source_rds, db_type=db_type, parameter_group=world["parameter_group"],
                             name="rds.logical_replication")

    # A dry run stops after preflight: with set_logical_replication it passes, plans the change, makes none.
    first = len(record_aws_calls.calls)
    facts = run_operator(preflight_operator(world, set_logical_replication=True))
    assert value() == "0"
    assert facts["planned_changes"] == [
        f"set rds.logical_replication=1 in parameter group {world['parameter_group']} and reboot the writer "
        f"{world['writer']} (task source_logical_replication_on, after proceed)"]
    made = [c["operation"] for c in record_aws_calls.calls[first:] if c["service"] != "sts"]
    assert made and not [op for op in made if not op.startswith(("Describe", "Get", "List"))], made

    # After proceed the factory's task makes the change, reboots the writer and waits for it.
    change = run_operator(RdsSetLogicalReplicationOperator(
        task_id="source_logical_replication_on", aws_conn_id="aws_source", db_type=db_type,
        db_identifier=world["source_id"], enabled=True, poll_interval=0.05))
    assert value() == "1"
    assert (change["previous"], change["value"], change["rebooted"]) == ("0", "1", world["writer"])
    assert run_operator(preflight_operator(world))["planned_changes"] == []


def test_default_parameter_group_is_reported_not_changed(admin, standins):
    world = make_world(admin, db_type="instance", logical_replication="1")
    admin("rds").create_db_instance(DBInstanceIdentifier="plain-src", Engine="postgres", EngineVersion="14.9",
                                    DBInstanceClass="db.t3.micro", MasterUsername="postgres",
                                    MasterUserPassword="not-a-secret", AllocatedStorage=20, StorageEncrypted=True,
                                    KmsKeyId=world["source_key_arn"])
    world.update(source_id="plain-src", writer="plain-src")
    with pytest.raises(PreflightFailed) as failed:
        run_operator(preflight_operator(world, set_logical_replication=True, target_parameter_group=None,
                                        min_free_storage_bytes=0))
    assert failed.value.problems == [
        "DB instance plain-src uses the default DB parameter group default.postgres14, where rds.logical_replication "
        "is 0 and which cannot be changed: create a custom DB parameter group of family postgres14 with "
        "rds.logical_replication=1, attach it (aws rds modify-db-instance --db-instance-identifier plain-src "
        "--db-parameter-group-name <new group>), then reboot the writer (aws rds reboot-db-instance "
        "--db-instance-identifier plain-src)"]


def test_region_and_missing_metrics_and_missing_source(admin, standins, aws_connections, monkeypatch):
    world = make_world(admin, db_type="instance", free_storage_bytes=None)
    target = json.loads(aws_conn_uri(aws_connections["endpoint"], role_arn=f"arn:aws:iam::{TARGET_ACCOUNT}:role/x"))
    target["extra"]["region_name"] = "eu-west-1"
    monkeypatch.setenv("AIRFLOW_CONN_AWS_TARGET", json.dumps(target))
    with pytest.raises(PreflightFailed) as failed:
        run_operator(preflight_operator(world, target_kms_key_id=None, target_parameter_group=None,
                                        target_identifier=None))
    assert failed.value.problems == [
        f"source {world['source_arn']} is in {REGION} but the target connection uses eu-west-1: a clone or "
        f"snapshot copy stays in one region; set region_name to {REGION} in that Airflow connection's extra",
        "CloudWatch has no FreeStorageSpace datapoints for DB instance billing-src in the last 30 minutes, so WAL "
        "headroom cannot be checked: make sure the instance is running and reporting, or set "
        "min_free_storage_bytes to 0 to skip this check",
    ]
    with pytest.raises(PreflightFailed, match="DB instance nope does not exist in region us-east-1 of this "
                                              "connection's account: check source.instance_identifier"):
        run_operator(preflight_operator(world, source_identifier="nope"))
    with pytest.raises(ValueError, match="source identifier: expected an RDS identifier"):
        run_operator(preflight_operator(world, source_identifier="bad_name"))


@pytest.mark.parametrize(("engine", "version", "ok"), [
    ("aurora-postgresql", "11.8", False), ("aurora-postgresql", "11.9", True), ("aurora-postgresql", "11.21", True),
    ("aurora-postgresql", "10.21", False), ("aurora-postgresql", "16.1", True),
    ("postgres", "10.23", False), ("postgres", "11.1", True), ("postgres", "17.2", True),
])
def test_engine_versions(engine, version, ok):
    db_type = "cluster" if engine.startswith("aurora") else "instance"
    assert (engine_problem(desc(db_type=db_type, engine=engine, engine_version=version)) is None) is ok


def test_engine_and_pending_reboot_messages():
    assert engine_problem(desc(engine="aurora-mysql")) == (
        "DB cluster orders-src runs engine 'aurora-mysql'; this path needs aurora-postgresql (Aurora PostgreSQL): "
        "check the source identifier and initial_load")
    assert logical_replication_problem(desc(parameter_apply_status="pending-reboot"), "1") == (
        "rds.logical_replication=1 is set in DB cluster parameter group src-cluster-params of DB cluster orders-src "
        "but not applied (pending-reboot): reboot the writer (aws rds reboot-db-instance --db-instance-identifier "
        "orders-src-1)")
    assert logical_replication_problem(desc(), "1") is None


@pytest.mark.parametrize("db_type", ["cluster", "instance"])
def test_target_parameter_group_without_logical_replication_fails_before_anything_is_created(admin, standins,
                                                                                             db_type):
    # Issue 13 item 7: the clone starts with the source's slots; without rds.logical_replication=1 in
    # target.parameter_group PostgreSQL refuses to start, after the clone was paid for.
    world = make_world(admin, db_type=db_type)
    trds = admin("rds", TARGET_ACCOUNT)
    group, kind = world["target_parameter_group"], ("db-cluster-parameter-group" if db_type == "cluster"
                                                    else "db-parameter-group")
    modify = (trds.modify_db_cluster_parameter_group if db_type == "cluster" else trds.modify_db_parameter_group)
    name_arg = "DBClusterParameterGroupName" if db_type == "cluster" else "DBParameterGroupName"
    modify(**{name_arg: group, "Parameters": [{"ParameterName": "rds.logical_replication", "ParameterValue": "0",
                                               "ApplyMethod": "pending-reboot"}]})
    with pytest.raises(PreflightFailed) as failed:
        run_operator(preflight_operator(world))
    assert len(failed.value.problems) == 1
    problem = failed.value.problems[0]
    assert problem.startswith(f"rds.logical_replication is 0 in DB {'cluster ' if db_type == 'cluster' else ''}"
                              f"parameter group {group} (target.parameter_group, target account)")
    assert f"aws rds modify-{kind} --{kind}-name {group} --parameters " \
           f"ParameterName=rds.logical_replication,ParameterValue=1" in problem
    # Nothing was created in the target account.
    assert trds.describe_db_clusters()["DBClusters"] == [] and trds.describe_db_instances()["DBInstances"] == []
    # Once this migration made the target, it turned the value off there itself (after dropping the
    # copied slots): a rerun's preflight does not hold that against it.
    tags = [{"Key": "pg-account-migration", "Value": "orders"},
            {"Key": "pg-account-migration-source", "Value": world["source_arn"]}]
    if db_type == "cluster":
        trds.create_db_cluster(DBClusterIdentifier="orders-tgt", Engine="aurora-postgresql", Tags=tags,
                               MasterUsername="postgres", MasterUserPassword="not-a-secret")
    else:
        trds.create_db_instance(DBInstanceIdentifier="orders-tgt", Engine="postgres", DBInstanceClass="db.t3.micro",
                                AllocatedStorage=20, Tags=tags, MasterUsername="postgres",
                                MasterUserPassword="not-a-secret")
    assert run_operator(preflight_operator(world))["planned_changes"] == []
    # With the value set, the same preflight passes.
    modify(**{name_arg: group, "Parameters": [{"ParameterName": "rds.logical_replication", "ParameterValue": "1",
                                               "ApplyMethod": "pending-reboot"}]})
    assert run_operator(preflight_operator(world))["planned_changes"] == []


@pytest.mark.parametrize(("ttl", "warned"), [(300, True), (60, False)])
def test_preflight_reads_the_dns_ttl_and_warns_over_60_s(admin, standins, ttl, warned):
    # Issue 13 item 12: Route 53's INSYNC covers its own servers; resolvers keep the old answer for the old TTL.
    world = make_world(admin, db_type="cluster")
    route53 = admin("route53", TARGET_ACCOUNT)
    zone = route53.create_hosted_zone(Name="db.example.internal", CallerReference="ttl")["HostedZone"]["Id"]
    route53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [{"Action": "CREATE",
        "ResourceRecordSet": {"Name": "orders.db.example.internal", "Type": "CNAME", "TTL": ttl,
                              "ResourceRecords": [{"Value": "orders-src.cluster-x.us-east-1.rds.amazonaws.com"}]}}]})
    facts = run_operator(preflight_operator(world, dns_zone_id=zone, dns_record_name="orders.db.example.internal",
                                            dns_ttl=30))
    assert (facts["dns"]["ttl"], facts["dns"]["cutover_ttl"]) == (ttl, 30)
    if warned:
        assert facts["dns"]["warning"].startswith("DNS record orders.db.example.internal has a TTL of 300 s: "
                                                  "resolvers keep the old answer that long after the cutover")
    else:
        assert facts["dns"]["warning"] is None
