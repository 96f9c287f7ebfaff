"""AWS cutover steps: block source writes at its security groups (keeping the replication path),
put exactly those rules back on abort, switch the Route53 CNAME and wait for INSYNC, stop the source.

Issue 8, scenario 5: the security-group fence keeps the rules it revokes in the run's cutover journal
(on the target's real PostgreSQL), written before any rule is revoked; a worker killed right after a
revoke leaves nothing in XCom, and the teardown puts back exactly those rules from the journal alone.

Stand-ins: none for the project or PostgreSQL (the journal and the replication around the cutover run
on real PostgreSQL 15 servers, the target a pg_basebackup clone). moto (server mode) is AWS and
implements these EC2, Route53 and RDS calls, except that in a default VPC AWS answers a revoke that
matches no rule with `UnknownIpPermissions` and no error (moto raises InvalidPermission.NotFound): the
`_standins_installed` fixture in tests/aws/conftest.py patches moto's EC2 response to do the same; a Route53 change is
INSYNC at once there, so the wait is
exercised through its check function (tests/integration/test_cutover_dns.py makes it fail). The
killed worker is a real process running the real CutoverOperator; a botocore event handler in it
notes what the journal holds when a revoke is about to be sent and sends SIGKILL after the first one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from conftest import TARGET_ACCOUNT, make_world, run_operator

from connections.aws import aws_client
from migration import naming
from migration.aws.common import AwsMigrationError
from migration.aws.cutover import (
    Route53TargetOpener,
    SecurityGroupWriteBlock,
    WriteBlockError,
    block_source_writes,
    restore_source_writes,
    upsert_cname,
)
from migration.cutover_spec import CutoverSpec, SecurityGroupFence
from migration.journal import CutoverJournal
from migration.lsn import find_redo_done
from migration.native_cdc import advance_origin, create_publication, create_subscription
from operators.aws_cutover import RdsStopSourceOperator
from operators.cutover import UnblockSourceWritesOperator

pytestmark = [pytest.mark.aws, pytest.mark.usefixtures("record_aws_calls")]


@pytest.fixture
def network(admin):
    ec2 = admin("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    db_sg = ec2.create_security_group(GroupName="orders-db", Description="source db", VpcId=vpc)["GroupId"]
    db_sg2 = ec2.create_security_group(GroupName="orders-db-admin", Description="admin", VpcId=vpc)["GroupId"]
    dms_sg = ec2.create_security_group(GroupName="dms", Description="dms instance", VpcId=vpc)["GroupId"]
    app_sg = ec2.create_security_group(GroupName="app", Description="application", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=db_sg, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432,
         "IpRanges": [{"CidrIp": "10.1.0.0/16", "Description": "app subnets"}, {"CidrIp": "10.9.4.17/32"}],
         "UserIdGroupPairs": [{"GroupId": dms_sg, "Description": "dms"}, {"GroupId": app_sg, "Description": "app"}]},
        {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "Ipv6Ranges": [{"CidrIpv6": "::/0"}]},
    ])
    ec2.authorize_security_group_ingress(GroupId=db_sg2, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    return {"db": db_sg, "db2": db_sg2, "dms": dms_sg, "app": app_sg, "ec2": ec2}


def inbound(ec2, group: str) -> list[tuple]:
    """Inbound rules as comparable (protocol, ports, source, description) tuples."""
    rules = []
    for perm in ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]["IpPermissions"]:
        ports = (perm["IpProtocol"], perm.get("FromPort"), perm.get("ToPort"))
        rules += [(*ports, r["CidrIp"], r.get("Description")) for r in perm.get("IpRanges", [])]
        rules += [(*ports, r["CidrIpv6"], r.get("Description")) for r in perm.get("Ipv6Ranges", [])]
        rules += [(*ports, r["GroupId"], r.get("Description")) for r in perm.get("UserIdGroupPairs", [])]
    return sorted(rules, key=str)


def source_of(piece: dict) -> str:
    for key, field in (("IpRanges", "CidrIp"), ("Ipv6Ranges", "CidrIpv6"), ("UserIdGroupPairs", "GroupId")):
        if piece.get(key):
            return piece[key][0][field]
    raise AssertionError(piece)


def test_block_keeps_the_replication_path_and_restore_puts_back_exactly_what_went(network):
    ec2 = network["ec2"]
    before = {g: inbound(ec2, network[g]) for g in ("db", "db2")}
    source_ec2 = aws_client("aws_source", "ec2")
    revoked = block_source_writes(source_ec2, security_group_ids=[network["db"], network["db2"]],
                                  keep_security_group_ids=[network["dms"]], keep_cidrs=["10.9.4.0/24"])
    assert inbound(ec2, network["db"]) == [("tcp", 5432, 5432, "10.9.4.17/32", None),
                                           ("tcp", 5432, 5432, network["dms"], "dms")]
    assert inbound(ec2, network["db2"]) == []
    revoked_sources = sorted((g["GroupId"], source_of(p)) for g in revoked for p in g["IpPermissions"])
    assert revoked_sources == sorted([(network["db"], "10.1.0.0/16"), (network["db"], network["app"]),
                                      (network["db"], "::/0"), (network["db2"], "0.0.0.0/0")])

    # A rerun finds nothing more to revoke and keeps the first run's record when given it.
    assert block_source_writes(source_ec2, security_group_ids=[network["db"], network["db2"]],
                               keep_security_group_ids=[network["dms"]], keep_cidrs=["10.9.4.0/24"]) == []
    again = block_source_writes(source_ec2, security_group_ids=[network["db"], network["db2"]],
                                keep_security_group_ids=[network["dms"]], keep_cidrs=["10.9.4.0/24"],
                                previously_revoked=revoked)
    assert again == revoked

    assert restore_source_writes(source_ec2, revoked) == 4
    assert {g: inbound(ec2, network[g]) for g in ("db", "db2")} == before  # descriptions included
    assert restore_source_writes(source_ec2, revoked) == 0  # already there: not an error


def test_block_refuses_to_cut_the_replication_path(network):
    source_ec2 = aws_client("aws_source", "ec2")
    before = inbound(network["ec2"], network["db"])
    with pytest.raises(ValueError, match="keep_security_group_ids and keep_cidrs are both empty"):
        block_source_writes(source_ec2, security_group_ids=[network["db"]])
    with pytest.raises(ValueError, match="keep_cidrs: expected CIDR blocks like 10.0.0.0/16, got '10.9.4'"):
        block_source_writes(source_ec2, security_group_ids=[network["db"]], keep_cidrs=["10.9.4"])
    with pytest.raises(ValueError, match="security group ids: expected ids like sg-0123abcd, got 'dms'"):
        block_source_writes(source_ec2, security_group_ids=[network["db"]], keep_security_group_ids=["dms"])
    assert inbound(network["ec2"], network["db"]) == before


def test_write_fence_persists_its_plan_before_revoking_and_undoes_exactly(network):
    ec2 = network["ec2"]
    before = {g: inbound(ec2, network[g]) for g in ("db", "db2")}
    persisted = []
    fence = SecurityGroupWriteBlock(aws_client("aws_source", "ec2"), security_group_ids=[network["db"], network["db2"]],
                                    keep_security_group_ids=[network["dms"]], persist=persisted.append)
    assert fence.prepare() == {"security_groups": [network["db"], network["db2"]], "rules_to_revoke": 5}
    assert {g: inbound(ec2, network[g]) for g in ("db", "db2")} == before  # prepare changes nothing
    result = fence.block()
    assert persisted == [result["revoked"]] and result["rules"] == 5
    assert [r[3] for r in inbound(ec2, network["db"])] == [network["dms"]] and inbound(ec2, network["db2"]) == []
    assert fence.unblock() == {"restored": 5}
    assert {g: inbound(ec2, network[g]) for g in ("db", "db2")} == before


def test_write_fence_failing_part_way_restores_what_it_revoked(network):
    ec2 = network["ec2"]

    def someone_else_removes_a_rule(plan):
        # Between the plan and the revoke, another change takes the SSH rule away: revoking it fails.
        ec2.revoke_security_group_ingress(GroupId=network["db2"], IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])

    before = inbound(ec2, network["db"])
    fence = SecurityGroupWriteBlock(aws_client("aws_source", "ec2"), security_group_ids=[network["db"], network["db2"]],
                                    keep_security_group_ids=[network["dms"]], persist=someone_else_removes_a_rule)
    with pytest.raises(WriteBlockError, match=f"revoking inbound rules of {network['db2']} failed "
                                              "\\(InvalidPermission.NotFound"):
        fence.block()
    assert [g["GroupId"] for g in fence.revoked] == [network["db"]]
    assert fence.unblock() == {"restored": 4}
    assert inbound(ec2, network["db"]) == before


def test_write_fence_verifies_the_revoke_and_fails_before_the_drain_when_a_rule_is_left(admin, standins):
    # Groups in the default VPC: there AWS answers an unmatched revoke with UnknownIpPermissions, no error.
    ec2 = admin("ec2")
    db = ec2.create_security_group(GroupName="orders-db-default", Description="source db")["GroupId"]
    dms = ec2.create_security_group(GroupName="dms-default", Description="dms instance")["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=db, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432,
         "IpRanges": [{"CidrIp": "10.1.0.0/16", "Description": "app subnets"}], "UserIdGroupPairs": [{"GroupId": dms}]},
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    ssh = {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
    wider = {**ssh, "ToPort": 23}

    def someone_else_widens_the_ssh_rule(plan):
        # Between the plan and the revoke, the SSH rule becomes 22-23: the planned revoke matches nothing.
        ec2.revoke_security_group_ingress(GroupId=db, IpPermissions=[ssh])
        ec2.authorize_security_group_ingress(GroupId=db, IpPermissions=[wider])

    fence = SecurityGroupWriteBlock(aws_client("aws_source", "ec2"), security_group_ids=[db],
                                    keep_security_group_ids=[dms], persist=someone_else_widens_the_ssh_rule,
                                    verify_attempts=2, verify_delay=0.01)
    with pytest.raises(WriteBlockError, match=f"inbound rules still admit connections after the revoke "
                                              f"\\({db}: tcp 22-23 from 0.0.0.0/0\\)"):
        fence.block()
    # Only the rule AWS matched counts as revoked; the abort path puts back exactly that one.
    assert [source_of(p) for g in fence.revoked for p in g["IpPermissions"]] == ["10.1.0.0/16"]
    assert inbound(ec2, db) == [("tcp", 22, 23, "0.0.0.0/0", None), ("tcp", 5432, 5432, dms, None)]
    assert fence.unblock() == {"restored": 1}
    assert inbound(ec2, db) == [("tcp", 22, 23, "0.0.0.0/0", None), ("tcp", 5432, 5432, "10.1.0.0/16", "app subnets"),
                                ("tcp", 5432, 5432, dms, None)]

    # The stand-in answers as AWS does: no error, the rule in UnknownIpPermissions.
    answer = aws_client("aws_source", "ec2").revoke_security_group_ingress(GroupId=db, IpPermissions=[ssh])
    assert answer["UnknownIpPermissions"] == [ssh]

    # A rule that went before the revoke is not left behind: the fence holds and it is not put back later.
    ec2.revoke_security_group_ingress(GroupId=db, IpPermissions=[wider])
    ec2.authorize_security_group_ingress(GroupId=db, IpPermissions=[ssh])
    gone = SecurityGroupWriteBlock(aws_client("aws_source", "ec2"), security_group_ids=[db],
                                   keep_security_group_ids=[dms], verify_attempts=2, verify_delay=0.01,
                                   persist=lambda plan: ec2.revoke_security_group_ingress(GroupId=db,
                                                                                          IpPermissions=[ssh]))
    assert gone.block()["rules"] == 1
    assert inbound(ec2, db) == [("tcp", 5432, 5432, dms, None)]
    assert gone.unblock() == {"restored": 1}


def test_dns_switch_reaches_insync_and_reports_the_previous_target(admin):
    route53 = admin("route53", TARGET_ACCOUNT)
    zone = route53.create_hosted_zone(Name="db.example.internal", CallerReference="orders")["HostedZone"]["Id"]
    route53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [{"Action": "CREATE",
        "ResourceRecordSet": {"Name": "orders.db.example.internal", "Type": "CNAME", "TTL": 60,
                              "ResourceRecords": [{"Value": "orders-src.cluster-x.us-east-1.rds.amazonaws.com"}]}}]})
    # The cutover's target opener: UPSERT, then wait in place until Route53 has it INSYNC.
    opened = Route53TargetOpener(aws_client("aws_target", "route53"), hosted_zone_id=zone,
                                 record_name="orders.db.example.internal",
                                 target_host="orders-tgt.cluster-y.us-east-1.rds.amazonaws.com", ttl=30).open()
    assert opened["status"] == "INSYNC"
    assert opened["previous"] == "orders-src.cluster-x.us-east-1.rds.amazonaws.com"
    records = route53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
    cname = next(r for r in records if r["Type"] == "CNAME")
    assert (cname["TTL"], cname["ResourceRecords"]) == (
        30, [{"Value": "orders-tgt.cluster-y.us-east-1.rds.amazonaws.com"}])
    assert route53.get_change(Id=opened["change_id"])["ChangeInfo"]["Status"] == "INSYNC"

    route53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [{"Action": "CREATE",
        "ResourceRecordSet": {"Name": "a.db.example.internal", "Type": "A", "TTL": 60,
                              "ResourceRecords": [{"Value": "10.0.0.1"}]}}]})
    with pytest.raises(AwsMigrationError, match="a.db.example.internal in hosted zone .* is a A record, not a CNAME"):
        upsert_cname(aws_client("aws_target", "route53"), hosted_zone_id=zone, record_name="a.db.example.internal",
                     target_host="x.example")


@pytest.mark.parametrize("db_type", ["cluster", "instance"])
def test_stop_source_after_cutover(admin, standins, db_type):
    world = make_world(admin, db_type=db_type, free_storage_bytes=None)
    stop = RdsStopSourceOperator(task_id="stop_source", source_aws_conn_id="aws_source", db_type=db_type,
                                 db_identifier=world["source_id"])
    assert run_operator(stop) == {"db_identifier": world["source_id"], "status": "stopping"}
    if db_type == "cluster":
        status = admin("rds").describe_db_clusters(DBClusterIdentifier=world["source_id"])["DBClusters"][0]["Status"]
    else:
        status = admin("rds").describe_db_instances(DBInstanceIdentifier=world["source_id"])["DBInstances"][0][
            "DBInstanceStatus"]
    assert status == "stopped"
    assert run_operator(stop) == {"db_identifier": world["source_id"], "status": "stopped"}


# --- issue 8, scenario 5: the revoked rules live in the journal, and the teardown reads only that ---

ROOT = Path(__file__).resolve().parents[2]
MIGRATION, DATABASE, RUN_ID, CONTROL = "sgfence", "orders", "scheduled__2026-01-01T00:00:00+00:00", "migration_control"

# A worker running the real CutoverOperator with the security-group fence. Before each revoke it
# notes what the journal (read as the teardown reads it) holds; right after the first revoke it dies.
WORKER = """
import json, os, signal, sys
import botocore.session
import psycopg
from migration.journal import CutoverJournal

args = json.loads(sys.argv[1])

def journaled():
    with psycopg.connect(args["journal"], autocommit=True) as conn:
        return CutoverJournal(conn=conn, control_schema=args["control_schema"], migration_id=args["migration_id"],
                              run_id=args["run_id"]).read().fence_records

def before_revoke(params, **_):
    with open(args["observed"], "a") as out:
        out.write(json.dumps({"revoking": params, "journal": journaled()}) + "\\n")

def after_revoke(**_):
    os.kill(os.getpid(), signal.SIGKILL)

original = botocore.session.Session.__init__

def init(self, *a, **k):
    original(self, *a, **k)
    self.register("provide-client-params.ec2.RevokeSecurityGroupIngress", before_revoke)
    self.register("after-call.ec2.RevokeSecurityGroupIngress", after_revoke)

botocore.session.Session.__init__ = init

from migration.cutover_spec import CutoverSpec, SecurityGroupFence
from operators.cutover import CutoverOperator

spec = CutoverSpec(**{**args["spec"], "security_groups": SecurityGroupFence(**args["spec"]["security_groups"])})
CutoverOperator(task_id="switch_over", spec=spec, **args["operator"]).execute({"ti": None})
print("the worker was not killed")
"""


class NoXcom:
    """A task instance whose XCom is empty, as after Airflow cleared it for a new try: any use fails."""

    def xcom_pull(self, *args, **kwargs):
        raise AssertionError("the teardown must decide from the journal, not from XCom")

    xcom_push = xcom_pull


@pytest.fixture
def replicated(pg_servers, monkeypatch):
    """A source with the migrated database, replicated by native CDC into its pg_basebackup clone,
    named as the DAG names them; Airflow connections for both."""
    source = pg_servers.new("sgsrc")
    with psycopg.connect(source.conninfo(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {DATABASE}")
    with psycopg.connect(source.conninfo(DATABASE), autocommit=True) as conn:
        conn.execute("CREATE SCHEMA sales")
        conn.execute("CREATE TABLE sales.orders (id serial PRIMARY KEY, total int NOT NULL)")
        conn.execute("INSERT INTO sales.orders (total) SELECT g FROM generate_series(1, 50) g")
        create_publication(conn, naming.publication_name(MIGRATION, DATABASE), ["sales"])
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')",
                     (naming.slot_name(MIGRATION, DATABASE),))
    target = pg_servers.clone(source)
    subscription = naming.subscription_name(MIGRATION, DATABASE)
    with psycopg.connect(target.conninfo(DATABASE), autocommit=True) as conn:
        create_subscription(conn, subscription, source.conninfo(DATABASE),
                            naming.publication_name(MIGRATION, DATABASE), naming.slot_name(MIGRATION, DATABASE))
        advance_origin(conn, subscription, find_redo_done(target.log_text()))
    conns = {}
    for side, server in (("source", source), ("target", target)):
        conns[side] = f"{MIGRATION}_{side}"
        monkeypatch.setenv(f"AIRFLOW_CONN_{MIGRATION.upper()}_{side.upper()}", json.dumps({
            "conn_type": "postgres", "host": "127.0.0.1", "port": server.port, "login": "postgres",
            "schema": DATABASE}))
    yield {"source": source, "target": target, "conns": conns}
    with psycopg.connect(target.conninfo(DATABASE), autocommit=True) as conn:
        conn.execute(f"DROP SUBSCRIPTION IF EXISTS {subscription}")


@pytest.mark.safety
def test_security_group_fence_journals_the_rules_before_revoking_and_a_fresh_teardown_puts_them_back(
        network, replicated, tmp_path):
    ec2 = network["ec2"]
    groups = [network["db"], network["db2"]]
    before = {g: inbound(ec2, g) for g in groups}
    observed = tmp_path / "observed.jsonl"
    common = {"source_conn_id": replicated["conns"]["source"], "target_conn_id": replicated["conns"]["target"],
              "run_id": RUN_ID}
    fence = {"aws_conn_id": "aws_source", "security_group_ids": groups, "keep_security_group_ids": [network["dms"]]}
    args = {"journal": replicated["target"].conninfo(DATABASE), "control_schema": CONTROL, "migration_id": MIGRATION,
            "run_id": RUN_ID, "observed": str(observed),
            "spec": {"migration_id": MIGRATION, "control_schema": CONTROL, "security_groups": fence},
            "operator": {**common, "databases": [DATABASE], "schemas": ["sales"], "replication_role": "postgres"}}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT / "dags")])}
    worker = subprocess.run([sys.executable, "-c", WORKER, json.dumps(args)], env=env, capture_output=True,
                            text=True, timeout=300)
    assert worker.returncode == -9, worker.stdout + worker.stderr

    # The worker died right after revoking the first group's rules; the second group was never touched.
    assert inbound(ec2, network["db"]) == [("tcp", 5432, 5432, network["dms"], "dms")]
    assert inbound(ec2, network["db2"]) == before[network["db2"]]
    # When the first revoke was about to be sent, the journal already held every rule the fence was
    # about to revoke, in both groups, exactly as described (descriptions included).
    first = json.loads(observed.read_text().splitlines()[0])
    journaled = {r["object"]: r["previous"] for r in first["journal"]}
    assert [r["kind"] for r in first["journal"]] == ["security_group", "security_group"]
    assert sorted(journaled) == sorted(groups)
    assert journaled[first["revoking"]["GroupId"]]["IpPermissions"] == first["revoking"]["IpPermissions"]
    assert sorted(source_of(p) for p in journaled[network["db"]]["IpPermissions"]) == sorted(
        ["10.1.0.0/16", "10.9.4.17/32", network["app"], "::/0"])
    assert [source_of(p) for p in journaled[network["db2"]]["IpPermissions"]] == ["0.0.0.0/0"]
    assert {"CidrIp": "10.1.0.0/16", "Description": "app subnets"} in [
        r for p in journaled[network["db"]]["IpPermissions"] for r in p.get("IpRanges", [])]

    # The teardown, a new operator in another process than the worker, with an empty XCom: it reads
    # the journal and puts back exactly what was revoked (the never-revoked rule is already there).
    spec = CutoverSpec(migration_id=MIGRATION, control_schema=CONTROL,
                       security_groups=SecurityGroupFence(**fence))
    teardown = UnblockSourceWritesOperator(task_id="unblock_source_writes", spec=spec, control_database=DATABASE,
                                           databases=[DATABASE], schemas=["sales"], **common)
    result = teardown.execute({"params": {}, "ti": NoXcom()})
    assert result["restored"] == ["security_group:4 rule(s)"]
    assert {g: inbound(ec2, g) for g in groups} == before
    with psycopg.connect(replicated["target"].conninfo(DATABASE), autocommit=True) as conn:
        state = CutoverJournal(conn=conn, control_schema=CONTROL, migration_id=MIGRATION, run_id=RUN_ID).read()
        assert not state.fenced and state.target_open is None and state.outcome["state"] == "restored"
        assert state.step("block_writes") == "started"  # the worker never got to record the step's end
    # A rerun of the teardown has nothing left to do and changes nothing.
    again = teardown.execute({"params": {}, "ti": NoXcom()})
    assert again["restored"] == [] and again["note"] == "nothing is fenced by this run"
    assert {g: inbound(ec2, g) for g in groups} == before


# --- issue 13 item 12: the DNS TTL, lowered one old TTL ahead of the cutover -------------------------------

def _zone_with_cname(admin, ttl: int) -> str:
    route53 = admin("route53", TARGET_ACCOUNT)
    zone = route53.create_hosted_zone(Name="db.example.internal", CallerReference=f"ttl-{ttl}")["HostedZone"]["Id"]
    route53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [{"Action": "CREATE",
        "ResourceRecordSet": {"Name": "orders.db.example.internal", "Type": "CNAME", "TTL": ttl,
                              "ResourceRecords": [{"Value": "orders-src.cluster-x.us-east-1.rds.amazonaws.com"}]}}]})
    return zone


def test_dns_ttl_is_lowered_and_the_task_waits_one_old_ttl_before_the_cutover_can_come(admin):
    from datetime import datetime, timedelta

    from airflow.sdk.exceptions import TaskDeferred

    from operators.aws_cutover import Route53LowerTtlOperator
    from operators.report import source_changes

    zone = _zone_with_cname(admin, 300)
    lower = Route53LowerTtlOperator(task_id="lower_dns_ttl", aws_conn_id="aws_target", hosted_zone_id=zone,
                                    record_name="orders.db.example.internal", ttl=30)
    with pytest.raises(TaskDeferred) as deferred:
        lower.execute({})
    lowered_at = datetime.fromisoformat(deferred.value.kwargs["result"]["lowered_at"])
    moment = deferred.value.trigger.serialize()[1]["moment"]
    assert moment - lowered_at >= timedelta(seconds=300)  # resolvers may hold the old answer that long
    record = admin("route53", TARGET_ACCOUNT).list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
    cname = next(r for r in record if r["Type"] == "CNAME")
    assert (cname["TTL"], cname["ResourceRecords"]) == (
        30, [{"Value": "orders-src.cluster-x.us-east-1.rds.amazonaws.com"}])  # only the TTL changed
    result = lower.execute_complete({}, event=None, **deferred.value.kwargs)
    assert (result["old_ttl"], result["ttl"], result["changed"]) == (300, 30, True)
    # A rerun finds it lowered: nothing changes and nothing waits.
    again = lower.execute({})
    assert (again["old_ttl"], again["ttl"], again["changed"]) == (30, 30, False)

    # The report shows both TTLs.
    class Xcoms:  # stands in for Airflow's task instance: the XComs the report reads
        def xcom_pull(self, task_ids):
            return result if task_ids == "lower_dns_ttl" else None

    assert source_changes(Xcoms()) == [
        f"DNS record orders.db.example.internal: TTL 300 s before, 30 s for the cutover (lowered at "
        f"{result['lowered_at']}, one old TTL ahead)"]


def test_dag_lowers_the_ttl_after_proceed_in_a_branch_that_holds_back_only_the_switch():
    from dag_factory import build_dag
    from migration.config import load_config

    dag = build_dag(load_config(Path(__file__).resolve().parents[2] / "include" / "migrations" / "aurora_orders.yaml"))
    lower = dag.get_task("lower_dns_ttl")
    assert "proceed" in lower.get_flat_relative_ids(upstream=True)
    assert "lower_dns_ttl" in dag.get_task("cutover.switch_over").get_flat_relative_ids(upstream=True)
    # Its wait of one old TTL holds back only the switch: the clone, CDC, the waits and the gate do not wait.
    assert lower.downstream_task_ids == {"cutover.switch_over"}
    for task_id in ("share_cluster", "create_clone", "start_cdc.start_cdc_task", "cutover.approve_cutover"):
        assert "lower_dns_ttl" not in dag.get_task(task_id).get_flat_relative_ids(upstream=True), task_id
    assert (lower.ttl, lower.record_name) == (30, "orders-db.internal.example.com")
