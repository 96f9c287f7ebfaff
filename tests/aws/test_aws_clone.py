"""Aurora clone path across two accounts: RAM share, invitation, KMS key policy, clone, writer,
deferred wait, the clone's endpoint reached with the source's credentials, target parameters, cleanup.

Stand-ins (moto 5.2.5 lacks these; each is a patch of moto's classes in this process, made in
tests/aws/conftest.py `_standins_installed`, so botocore still validates every request):
- RAM invitations: get_resource_share_invitations / accept_resource_share_invitation are not
  implemented; the stand-in derives a PENDING invitation for each active share naming the
  account, and accepting it is what makes the share usable. get_resource_shares with
  resourceOwner=OTHER-ACCOUNTS (moto raises NotImplementedError) lists the accepted shares.
- Cross-account clone: moto cannot resolve another account's cluster ARN; the stand-in resolves it
  in the owner's backend and, as AWS does, refuses unless a RAM share of that cluster to the
  caller is accepted and the source key policy lets the caller's account use the key.
- A restored cluster is "creating" first (moto reports it available at once): the stand-in answers
  "creating" to the first `restore_creating_describes` describe_db_clusters and, as AWS does,
  refuses create_db_instance in it until then (InvalidDBClusterStateFault).
- Real data behind the clone: the source cluster is played by a real PostgreSQL server; the
  restore makes a real pg_basebackup clone of it, and the clone's Endpoint/Port in moto point at
  that clone, so the endpoint read from AWS is reached with the source's credentials for real.
"""

from __future__ import annotations

import json

import psycopg
import pytest
from airflow.sdk.exceptions import AirflowException, TaskDeferred
from botocore.exceptions import ClientError
from conftest import REGION, SOURCE_ACCOUNT, TARGET_ACCOUNT, make_world, postgres_conn_uri, run_operator, run_trigger

from connections.aws import aws_client
from connections.postgres import connect
from migration.aws.clone import ensure_cluster_clone, ensure_cluster_writer
from migration.aws.common import AwsMigrationError
from migration.aws.parameters import get_parameter
from migration.aws.sharing import ensure_resource_share, grant_key_to_account, kms_statement_sid
from operators.aws_cleanup import AwsCleanupOperator
from operators.aws_clone import RdsCreateClusterCloneOperator, RdsSetLogicalReplicationOperator, RdsShareClusterOperator
from sensors.aws_rds import RdsDbAvailableSensor
from triggers.poll import PollTrigger

pytestmark = [pytest.mark.aws, pytest.mark.usefixtures("record_aws_calls")]

MIGRATION = "orders"
CLONE = "orders-tgt"


@pytest.fixture(scope="module")
def source_pg(pg_servers):
    server = pg_servers.new("aurora-src")
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, total numeric NOT NULL)")
        conn.execute("INSERT INTO orders SELECT g, g * 1.5 FROM generate_series(1, 500) g")
    return server


@pytest.fixture
def world(admin, standins, pg_servers, source_pg, monkeypatch):
    world = make_world(admin, db_type="cluster")
    standins.pg = pg_servers
    standins.back(world["source_arn"], source_pg)
    monkeypatch.setenv("AIRFLOW_CONN_PG_SOURCE", postgres_conn_uri(source_pg))
    world["target_sg"] = admin("ec2", TARGET_ACCOUNT).create_security_group(
        GroupName="orders-tgt-db", Description="target db")["GroupId"]
    return world


def share_operator(world, **overrides):
    kwargs = dict(task_id="share_cluster", source_aws_conn_id="aws_source", target_aws_conn_id="aws_target",
                  migration_id=MIGRATION, source_cluster_identifier=world["source_id"],
                  target_account_id=TARGET_ACCOUNT)
    return RdsShareClusterOperator(**{**kwargs, **overrides})


def clone_operator(world, share, **overrides):
    kwargs = dict(task_id="create_clone", target_aws_conn_id="aws_target", migration_id=MIGRATION,
                  source_cluster_arn=share["source_cluster_arn"], cluster_identifier=CLONE,
                  kms_key_id=world["target_key_arn"], security_group_ids=[world["target_sg"]],
                  parameter_group=world["target_parameter_group"], instance_class="db.r6g.large")
    return RdsCreateClusterCloneOperator(**{**kwargs, **overrides})


def key_policy(admin, world) -> dict:
    return json.loads(admin("kms").get_key_policy(KeyId=world["source_key_id"], PolicyName="default")["Policy"])


def test_aurora_clone_across_accounts_reaches_a_real_clone_and_cleans_up(world, admin, standins, source_pg):
    policy_before = key_policy(admin, world)

    share = run_operator(share_operator(world))
    assert share["invitation"] == "ACCEPTED"
    assert share["share_arn"].startswith(f"arn:aws:ram:{REGION}:{SOURCE_ACCOUNT}:resource-share/")
    assert share["source_cluster_arn"] == world["source_arn"]
    assert share["kms_statement_sid"] == kms_statement_sid(TARGET_ACCOUNT)
    statements = key_policy(admin, world)["Statement"]
    assert statements[:-1] == policy_before["Statement"]
    assert statements[-1]["Principal"] == {"AWS": f"arn:aws:iam::{TARGET_ACCOUNT}:root"}

    clone = run_operator(clone_operator(world, share))
    assert clone["created"] is True
    assert clone["writer_instance_identifier"] == "orders-tgt-writer"
    described = admin("rds", TARGET_ACCOUNT).describe_db_clusters(DBClusterIdentifier=CLONE)["DBClusters"][0]
    assert described["DBClusterArn"] == f"arn:aws:rds:{REGION}:{TARGET_ACCOUNT}:cluster:{CLONE}"
    assert described["KmsKeyId"] == world["target_key_arn"]
    assert described["DBClusterParameterGroup"] == world["target_parameter_group"]
    assert [g["VpcSecurityGroupId"] for g in described["VpcSecurityGroups"]] == [world["target_sg"]]
    assert {t["Key"]: t["Value"] for t in described["TagList"]}["pg-account-migration-source"] == world["source_arn"]

    # The clone is still being created when the sensor first looks: it defers to the poll trigger.
    from moto.rds.models import rds_backends

    rds_backends[TARGET_ACCOUNT][REGION].clusters[CLONE].status = "creating"
    sensor = RdsDbAvailableSensor(task_id="wait_clone", aws_conn_id="aws_target", db_type="cluster",
                                  db_identifier=CLONE, writer_instance_identifier=clone["writer_instance_identifier"],
                                  poll_interval=0.05)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    trigger = deferred.value.trigger
    assert isinstance(trigger, PollTrigger)
    assert json.loads(json.dumps(trigger.serialize()[1]))["kwargs"]["identifier"] == CLONE
    endpoint = sensor.execute_complete({}, event=run_trigger(trigger).payload)
    backing = standins.backing[described["DBClusterArn"]]
    assert (endpoint["host"], endpoint["port"]) == ("127.0.0.1", backing.port)
    assert endpoint["writer_status"] == "available"

    # The endpoint read from AWS is reached with the source's credentials, and it holds the source's data.
    with psycopg.connect(source_pg.conninfo(), autocommit=True) as conn:
        conn.execute("INSERT INTO orders VALUES (501, 1.0)")  # after the clone: must not be on it
    with connect("pg_source", host=endpoint["host"], port=endpoint["port"]) as conn:
        assert conn.execute("SELECT count(*), max(id) FROM orders").fetchone() == (500, 500)
        assert conn.execute("SELECT inet_server_port()").fetchone()[0] == backing.port != source_pg.port

    again = run_operator(clone_operator(world, share))
    assert again == {**clone, "created": False}

    # Logical replication off on the target (after its copied slots are gone), applied by a reboot.
    change = run_operator(RdsSetLogicalReplicationOperator(task_id="disable_lr", aws_conn_id="aws_target",
                                                           db_type="cluster", db_identifier=CLONE, enabled=False,
                                                           poll_interval=0.05))
    assert change == {"db_type": "cluster", "db_identifier": CLONE, "parameter_group": world["target_parameter_group"],
                      "parameter": "rds.logical_replication", "previous": "1", "value": "0",
                      "rebooted": "orders-tgt-writer"}
    target_rds = aws_client("aws_target", "rds")
    assert get_parameter(target_rds, db_type="cluster", parameter_group=world["target_parameter_group"],
                         name="rds.logical_replication") == "0"
    rerun = run_operator(RdsSetLogicalReplicationOperator(task_id="disable_lr", aws_conn_id="aws_target",
                                                          db_type="cluster", db_identifier=CLONE, enabled=False))
    assert (rerun["previous"], rerun["rebooted"]) == ("0", None)

    cleanup = AwsCleanupOperator(task_id="cleanup_aws", source_aws_conn_id="aws_source", migration_id=MIGRATION,
                                 target_account_id=TARGET_ACCOUNT, source_kms_key_id=world["source_key_arn"])
    assert cleanup.trigger_rule == "all_done"
    assert run_operator(cleanup) == {"deleted_shares": [share["share_arn"]], "kms_statement_removed": True,
                                     "snapshot_unshared": False}
    assert key_policy(admin, world) == policy_before
    # The target keeps logical replication off: it is the new primary.
    assert get_parameter(target_rds, db_type="cluster", parameter_group=world["target_parameter_group"],
                         name="rds.logical_replication") == "0"
    shares = admin("ram").get_resource_shares(resourceOwner="SELF")["resourceShares"]
    assert [s["status"] for s in shares] == ["DELETED"]
    # Source data is never touched: the cluster is still there and available.
    assert admin("rds").describe_db_clusters(DBClusterIdentifier=world["source_id"])["DBClusters"][0]["Status"] \
        == "available"
    assert run_operator(cleanup) == {"deleted_shares": [], "kms_statement_removed": False,
                                     "snapshot_unshared": False}


def test_key_policy_gets_one_statement_and_keeps_the_others(world, admin):
    kms = admin("kms")
    policy = key_policy(admin, world)
    keep = {"Sid": "AuditorsRead", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::333333333333:root"},
            "Action": "kms:DescribeKey", "Resource": "*"}
    policy["Statement"].append(keep)
    kms.put_key_policy(KeyId=world["source_key_id"], PolicyName="default", Policy=json.dumps(policy))

    first = run_operator(share_operator(world))
    second = run_operator(share_operator(world))
    assert first["kms_policy_changed"] is True and second["kms_policy_changed"] is False
    assert first["share_arn"] == second["share_arn"]
    assert len(admin("ram").get_resource_shares(resourceOwner="SELF")["resourceShares"]) == 1
    statements = key_policy(admin, world)["Statement"]
    assert [s.get("Sid") for s in statements] == [policy["Statement"][0].get("Sid"), "AuditorsRead",
                                                  kms_statement_sid(TARGET_ACCOUNT)]

    # Someone edits our statement: the next run repairs it in place, still one statement.
    edited = key_policy(admin, world)
    edited["Statement"][-1]["Action"] = ["kms:Decrypt"]
    kms.put_key_policy(KeyId=world["source_key_id"], PolicyName="default", Policy=json.dumps(edited))
    assert grant_key_to_account(aws_client("aws_source", "kms"), key_id=world["source_key_arn"],
                                account_id=TARGET_ACCOUNT) is True
    statements = key_policy(admin, world)["Statement"]
    assert [s.get("Sid") for s in statements].count(kms_statement_sid(TARGET_ACCOUNT)) == 1
    assert "kms:CreateGrant" in statements[-1]["Action"] and statements[1] == keep


def test_clone_needs_the_accepted_share_and_the_key_statement(world, admin, standins):
    target_rds = aws_client("aws_target", "rds")
    kwargs = dict(migration_id=MIGRATION, cluster_identifier=CLONE, source_cluster_arn=world["source_arn"],
                  kms_key_id=world["target_key_arn"], not_found_retry_seconds=0)
    with pytest.raises(AwsMigrationError, match="DBClusterNotFoundFault"):
        ensure_cluster_clone(target_rds, **kwargs)
    ensure_resource_share(aws_client("aws_source", "ram"), name="orders-clone-share",
                          resource_arn=world["source_arn"], principal=TARGET_ACCOUNT)
    with pytest.raises(AwsMigrationError, match="DBClusterNotFoundFault"):  # invitation still pending
        ensure_cluster_clone(target_rds, **kwargs)
    standins.organization = True  # one organization: shares need no invitation
    with pytest.raises(ClientError, match="KMSKeyNotAccessibleFault"):
        ensure_cluster_clone(target_rds, **kwargs)
    assert run_operator(share_operator(world))["invitation"] == "ASSOCIATED"
    assert ensure_cluster_clone(target_rds, **kwargs)["created"] is True


@pytest.mark.parametrize("organization", [False, True])
def test_share_waits_for_the_invitation_and_the_clone_retries_until_the_share_reaches_rds(world, standins,
                                                                                       organization):
    # Issue 13 item 8: seconds after create_resource_share the invitation (or, in one organization, the
    # share) is not listed yet, and a just-accepted share answers DBClusterNotFoundFault like a missing cluster.
    standins.organization = organization
    standins.invitations_hidden = 3
    share = run_operator(share_operator(world, invitation_poll_interval=0.01))
    assert share["invitation"] == ("ASSOCIATED" if organization else "ACCEPTED")
    assert standins.invitations_hidden == 0
    standins.restore_not_found = 2
    clone = run_operator(clone_operator(world, share, poll_interval=0.01, share_retry_interval=0.01))
    assert clone["created"] is True and standins.restore_not_found == 0


def test_share_and_clone_waits_are_bounded_and_say_why(world, standins):
    standins.invitations_hidden = 10 ** 6
    with pytest.raises(AwsMigrationError, match=r"no invitation to RAM share .* after 0 s: check that the share "
                                                r"names the target account"):
        run_operator(share_operator(world, invitation_wait_seconds=0.05, invitation_poll_interval=0.01))
    standins.invitations_hidden = 0
    share = run_operator(share_operator(world))
    standins.restore_not_found = 10 ** 6
    with pytest.raises(AwsMigrationError, match=r"answered DBClusterNotFoundFault on \d+ attempt\(s\).*AWS gives "
                                                r"that answer both for a missing cluster and for one not \(yet\) "
                                                r"shared with this account"):
        run_operator(clone_operator(world, share, share_retry_seconds=0.05, share_retry_interval=0.01))
    assert aws_client("aws_target", "rds").describe_db_clusters()["DBClusters"] == []


@pytest.mark.parametrize("db_type", ["cluster", "instance"])
def test_parameter_change_reboots_only_once_rds_reports_pending_reboot(admin, standins, record_aws_calls, db_type):
    # Issue 13 item 11: RDS shows a change 'applying' first; a reboot then restarts with the old value and
    # the change stays pending, so the wait for 'in-sync' could only run into its timeout.
    world = make_world(admin, db_type=db_type)
    standins.applying_describes = 3
    first = len(record_aws_calls.calls)
    change = run_operator(RdsSetLogicalReplicationOperator(
        task_id="source_logical_replication_off", aws_conn_id="aws_source", db_type=db_type,
        db_identifier=world["source_id"], enabled=False, poll_interval=0.01, wait_timeout=5))
    assert (change["previous"], change["value"], change["rebooted"]) == ("1", "0", world["writer"])
    operations = [c["operation"] for c in record_aws_calls.calls[first:] if c["service"] == "rds"]
    modify, reboot = operations.index(f"Modify{'DBCluster' if db_type == 'cluster' else 'DB'}ParameterGroup"), \
        operations.index("RebootDBInstance")
    describe = "DescribeDBClusters" if db_type == "cluster" else "DescribeDBInstances"
    assert operations[modify:reboot].count(describe) >= 4  # three times 'applying', then 'pending-reboot'
    assert standins.parameter_changes == {}  # the reboot applied it


def test_writer_is_created_only_once_the_clone_is_available(world, admin, standins):
    share = run_operator(share_operator(world))
    standins.restore_creating_describes = 3
    trds = admin("rds", TARGET_ACCOUNT)
    operator = clone_operator(world, share, poll_interval=0.01)
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute({})
    # The restore ran; the writer waits for the cluster (AWS refuses it while the cluster is creating).
    assert trds.describe_db_instances(Filters=[{"Name": "db-cluster-id", "Values": [CLONE]}])["DBInstances"] == []
    with pytest.raises(ClientError, match="InvalidDBClusterStateFault"):
        trds.create_db_instance(DBInstanceIdentifier="too-early", DBClusterIdentifier=CLONE,
                                Engine="aurora-postgresql", DBInstanceClass="db.r6g.large")
    trigger = deferred.value.trigger
    assert isinstance(trigger, PollTrigger) and deferred.value.method_name == "execute_complete"
    assert json.loads(json.dumps(trigger.serialize()[1]))["kwargs"]["identifier"] == CLONE
    event = run_trigger(trigger).payload
    assert event["status"] == "success" and event["attempts"] >= 2 and event["payload"]["status"] == "available"
    result = operator.execute_complete({}, event=event, **deferred.value.kwargs)
    assert result == {"cluster_identifier": CLONE,
                      "cluster_arn": f"arn:aws:rds:{REGION}:{TARGET_ACCOUNT}:cluster:{CLONE}",
                      "writer_instance_identifier": "orders-tgt-writer", "created": True}
    writer = trds.describe_db_instances(DBInstanceIdentifier="orders-tgt-writer")["DBInstances"][0]
    assert writer["DBClusterIdentifier"] == CLONE

    # Resumed without the deferral's kwargs, the writer step still finds the cluster (it describes it again).
    assert operator.execute_complete({}, event=event)["cluster_arn"] == result["cluster_arn"]

    # A failed wait names the clone; a rerun finds both and does not wait.
    with pytest.raises(AirflowException, match=f"waiting for clone {CLONE} to be available failed: gone"):
        operator.execute_complete({}, event={"status": "error", "message": "gone"}, **deferred.value.kwargs)
    assert run_operator(clone_operator(world, share), max_deferrals=0) == {**result, "created": False}


def test_writer_is_refused_while_the_cluster_is_not_available(world, admin, standins):
    run_operator(share_operator(world))
    standins.restore_creating_describes = 5
    target_rds = aws_client("aws_target", "rds")
    ensure_cluster_clone(target_rds, migration_id=MIGRATION, cluster_identifier=CLONE,
                         source_cluster_arn=world["source_arn"], kms_key_id=world["target_key_arn"])
    with pytest.raises(AwsMigrationError, match=f"{CLONE} is 'creating': its writer orders-tgt-writer can be created "
                                                f"only once it is 'available'"):
        ensure_cluster_writer(target_rds, migration_id=MIGRATION, cluster_identifier=CLONE,
                              instance_identifier="orders-tgt-writer")
    assert admin("rds", TARGET_ACCOUNT).describe_db_instances()["DBInstances"] == []


def test_rerun_refuses_resources_it_did_not_make(world, admin):
    share = run_operator(share_operator(world))
    trds = admin("rds", TARGET_ACCOUNT)
    trds.create_db_cluster(DBClusterIdentifier=CLONE, Engine="aurora-postgresql", MasterUsername="postgres",
                           MasterUserPassword="not-a-secret")
    with pytest.raises(AwsMigrationError, match=f"DB cluster {CLONE} already exists but was not made by migration"):
        run_operator(clone_operator(world, share))

    # A same-named share that shares something else is reported with the command that fixes it.
    admin("ram").create_resource_share(name="orders-other", resourceArns=[world["source_arn"]],
                                       principals=["444444444444"])
    with pytest.raises(AwsMigrationError, match="does not share account 222222222222: delete it"):
        run_operator(share_operator(world, share_name="orders-other"))


def test_bad_input_names_the_field_and_creates_nothing(world, admin):
    with pytest.raises(ValueError, match="target_account_id: expected a 12-digit AWS account id"):
        run_operator(share_operator(world, target_account_id="2222"))
    assert admin("ram").get_resource_shares(resourceOwner="SELF")["resourceShares"] == []
    share = {"source_cluster_arn": world["source_arn"]}
    with pytest.raises(ValueError, match="target.cluster_identifier: expected an RDS identifier"):
        run_operator(clone_operator(world, share, cluster_identifier="orders_tgt"))
    with pytest.raises(ValueError, match="source_cluster_arn: expected an RDS cluster ARN"):
        run_operator(clone_operator(world, {"source_cluster_arn": world["source_key_arn"]}))
    assert admin("rds", TARGET_ACCOUNT).describe_db_clusters()["DBClusters"] == []
