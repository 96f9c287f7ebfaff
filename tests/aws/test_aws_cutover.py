"""AWS cutover steps: block source writes at its security groups (keeping the replication path),
put exactly those rules back on abort, switch the Route53 CNAME and wait for INSYNC, stop the source.

Stand-ins: none. moto implements these EC2, Route53 and RDS calls; a Route53 change is INSYNC at
once there, so the wait is exercised through its check function.
"""

from __future__ import annotations

import pytest
from conftest import TARGET_ACCOUNT, make_world, run_operator

from hooks.aws import aws_client
from migration.aws import (
    AwsMigrationError,
    Route53TargetOpener,
    SecurityGroupWriteBlock,
    WriteBlockError,
    block_source_writes,
    restore_source_writes,
    upsert_cname,
)
from operators.aws_cutover import AwsStopSourceOperator

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
    assert (cname["TTL"], cname["ResourceRecords"]) == (30, [{"Value": "orders-tgt.cluster-y.us-east-1.rds.amazonaws.com"}])
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
    stop = AwsStopSourceOperator(task_id="stop_source", source_aws_conn_id="aws_source", db_type=db_type,
                                 db_identifier=world["source_id"])
    assert run_operator(stop) == {"db_identifier": world["source_id"], "status": "stopping"}
    if db_type == "cluster":
        status = admin("rds").describe_db_clusters(DBClusterIdentifier=world["source_id"])["DBClusters"][0]["Status"]
    else:
        status = admin("rds").describe_db_instances(DBInstanceIdentifier=world["source_id"])["DBInstances"][0][
            "DBInstanceStatus"]
    assert status == "stopped"
    assert run_operator(stop) == {"db_identifier": world["source_id"], "status": "stopped"}
