"""The AWS side of the cutover: the security-group write fence, the Route53 target opener, stopping the source.

``SecurityGroupWriteBlock`` and ``Route53TargetOpener`` are the pluggable fence and opener of
``migration.cutover.run_cutover``.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from migration.aws.common import AwsMigrationError, db_kind, error_code, require_db

_SOURCE_KEYS = ("IpRanges", "Ipv6Ranges", "UserIdGroupPairs", "PrefixListIds")


def _split_permission(permission: dict[str, Any]) -> list[dict[str, Any]]:
    """One IpPermission per source, so each rule can be kept, revoked and put back on its own."""
    base = {k: permission[k] for k in ("IpProtocol", "FromPort", "ToPort") if k in permission}
    pieces = []
    for key in _SOURCE_KEYS:
        for source in permission.get(key) or []:
            clean = {k: v for k, v in source.items() if k != "PeeringStatus"}
            pieces.append({**base, key: [clean]})
    return pieces


def _network_kept(cidr: str, keep: Sequence[ipaddress._BaseNetwork]) -> bool:
    try:
        network = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False
    return any(network.version == k.version and network.subnet_of(k) for k in keep)


def _is_kept(piece: dict[str, Any], keep_groups: set[str], keep_networks: Sequence[ipaddress._BaseNetwork]) -> bool:
    if piece.get("UserIdGroupPairs"):
        return piece["UserIdGroupPairs"][0].get("GroupId") in keep_groups
    if piece.get("IpRanges"):
        return _network_kept(piece["IpRanges"][0].get("CidrIp", ""), keep_networks)
    if piece.get("Ipv6Ranges"):
        return _network_kept(piece["Ipv6Ranges"][0].get("CidrIpv6", ""), keep_networks)
    return False


def _without_descriptions(piece: dict[str, Any]) -> dict[str, Any]:
    bare = copy.deepcopy(piece)
    for key in _SOURCE_KEYS:
        for source in bare.get(key) or []:
            source.pop("Description", None)
    return bare


def _check_write_block_inputs(security_group_ids: Sequence[str], keep_security_group_ids: Sequence[str],
                              keep_cidrs: Sequence[str]) -> list[ipaddress._BaseNetwork]:
    if not security_group_ids:
        raise ValueError("security_group_ids: name the source's security groups (source.security_group_ids)")
    if not keep_security_group_ids and not keep_cidrs:
        raise ValueError("keep_security_group_ids and keep_cidrs are both empty: the replication path (the DMS "
                         "instance's security group or the target's CIDRs) would be blocked too")
    for group in (*security_group_ids, *keep_security_group_ids):
        if not isinstance(group, str) or not group.startswith("sg-"):
            raise ValueError(f"security group ids: expected ids like sg-0123abcd, got {group!r}")
    networks = []
    for cidr in keep_cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            raise ValueError(f"keep_cidrs: expected CIDR blocks like 10.0.0.0/16, got {cidr!r}") from None
    return networks


def plan_write_block(ec2: Any, *, security_group_ids: Sequence[str], keep_security_group_ids: Sequence[str] = (),
                     keep_cidrs: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The inbound rules block_source_writes would revoke, as ``[{"GroupId", "IpPermissions"}]``; changes nothing.

    Kept: rules whose source is one of ``keep_security_group_ids`` (e.g. the DMS replication
    instance's group) or a network inside one of ``keep_cidrs`` (e.g. the target's subnets and the
    Airflow workers that run the cutover's checks on the source).
    """
    networks = _check_write_block_inputs(security_group_ids, keep_security_group_ids, keep_cidrs)
    keep_groups = set(keep_security_group_ids)
    plan: list[dict[str, Any]] = []
    for group in ec2.describe_security_groups(GroupIds=list(security_group_ids))["SecurityGroups"]:
        pieces = [p for perm in group.get("IpPermissions", []) for p in _split_permission(perm)
                  if not _is_kept(p, keep_groups, networks)]
        if pieces:
            plan.append({"GroupId": group["GroupId"], "IpPermissions": pieces})
    return plan


class WriteBlockError(AwsMigrationError):
    """Revoking failed part way; ``revoked`` holds what was revoked, for restore_source_writes."""

    def __init__(self, message: str, revoked: list[dict[str, Any]]):
        super().__init__(message)
        self.revoked = revoked


def _rule_key(piece: dict[str, Any]) -> str:
    return json.dumps(_without_descriptions(piece), sort_keys=True)


def _describe_rule(piece: dict[str, Any]) -> str:
    ports = piece.get("FromPort")
    if piece.get("ToPort") not in (None, ports):
        ports = f"{ports}-{piece.get('ToPort')}"
    sources = [r.get("CidrIp") or r.get("CidrIpv6") or r.get("GroupId") or r.get("PrefixListId")
               for key in _SOURCE_KEYS for r in piece.get(key) or []]
    return f"{piece.get('IpProtocol')} {ports} from {', '.join(str(s) for s in sources)}"


def revoke_rules(ec2: Any, plan: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Revoke the planned rules, one call per security group; returns what was revoked.

    A rule AWS did not match is no error (it lists it in ``UnknownIpPermissions``, e.g. in a default
    VPC); it is left out of the result, and verify_write_block decides whether the fence holds.
    """
    revoked: list[dict[str, Any]] = []
    for group in plan:
        try:
            # Sent exactly as described (descriptions too): that is what matches the existing rules.
            response = ec2.revoke_security_group_ingress(GroupId=group["GroupId"],
                                                         IpPermissions=group["IpPermissions"])
        except ClientError as exc:
            raise WriteBlockError(f"revoking inbound rules of {group['GroupId']} failed ({error_code(exc)}: {exc}); "
                                  f"rules revoked before it are in .revoked", revoked) from exc
        unknown = {_rule_key(p) for perm in response.get("UnknownIpPermissions") or [] for p in _split_permission(perm)}
        matched = [p for p in group["IpPermissions"] if _rule_key(p) not in unknown]
        if matched:
            revoked.append({"GroupId": group["GroupId"], "IpPermissions": matched})
    return revoked


def verify_write_block(ec2: Any, *, security_group_ids: Sequence[str], keep_security_group_ids: Sequence[str] = (),
                       keep_cidrs: Sequence[str] = (), attempts: int = 3, delay: float = 1.0) -> list[dict[str, Any]]:
    """Describe the groups again after the revoke: the inbound rules that still admit writes (empty: the
    fence holds). AWS answers an unmatched revoke without an error and a change can take a moment to
    show, so a rule still listed is looked for again ``attempts`` times, ``delay`` seconds apart."""
    remaining: list[dict[str, Any]] = []
    for attempt in range(max(1, attempts)):
        if attempt:
            time.sleep(delay)
        remaining = plan_write_block(ec2, security_group_ids=security_group_ids,
                                     keep_security_group_ids=keep_security_group_ids, keep_cidrs=keep_cidrs)
        if not remaining:
            break
    return remaining


def revoke_and_verify(ec2: Any, plan: Sequence[dict[str, Any]], *, security_group_ids: Sequence[str],
                      keep_security_group_ids: Sequence[str] = (), keep_cidrs: Sequence[str] = (),
                      verify_attempts: int = 3, verify_delay: float = 1.0) -> list[dict[str, Any]]:
    """revoke_rules, then verify_write_block; raises WriteBlockError (``revoked`` set) when a rule is left."""
    revoked = revoke_rules(ec2, plan)
    remaining = verify_write_block(ec2, security_group_ids=security_group_ids,
                                   keep_security_group_ids=keep_security_group_ids, keep_cidrs=keep_cidrs,
                                   attempts=verify_attempts, delay=verify_delay)
    if remaining:
        left = "; ".join(f"{g['GroupId']}: {', '.join(_describe_rule(p) for p in g['IpPermissions'])}"
                         for g in remaining)
        raise WriteBlockError(f"inbound rules still admit connections after the revoke ({left}): AWS did not "
                              f"match them (UnknownIpPermissions) or they were added again, so writes are not "
                              f"fenced; the rules revoked are in .revoked", revoked)
    return revoked


def block_source_writes(ec2: Any, *, security_group_ids: Sequence[str], keep_security_group_ids: Sequence[str] = (),
                        keep_cidrs: Sequence[str] = (),
                        previously_revoked: Sequence[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Revoke every inbound rule of the source's security groups except the replication path's.

    Returns the exact revoked rules (descriptions included) merged with ``previously_revoked``:
    persist it, it is what restore_source_writes puts back (SecurityGroupWriteBlock persists the
    plan before revoking). Existing connections are not cut by a security group change; the
    cutover's drain ends them on the PostgreSQL side.
    """
    plan = plan_write_block(ec2, security_group_ids=security_group_ids,
                            keep_security_group_ids=keep_security_group_ids, keep_cidrs=keep_cidrs)
    return merge_revoked(previously_revoked or [], revoke_and_verify(
        ec2, plan, security_group_ids=security_group_ids, keep_security_group_ids=keep_security_group_ids,
        keep_cidrs=keep_cidrs))


def merge_revoked(*records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Union of revoked-rule records, each rule once, grouped by security group."""
    merged: dict[str, list[dict[str, Any]]] = {}
    seen: set[tuple[str, str]] = set()
    for record in records:
        for group in record:
            for piece in group.get("IpPermissions", []):
                key = (group["GroupId"], json.dumps(_without_descriptions(piece), sort_keys=True))
                if key in seen:
                    continue
                seen.add(key)
                merged.setdefault(group["GroupId"], []).append(piece)
    return [{"GroupId": gid, "IpPermissions": pieces} for gid, pieces in merged.items()]


def restore_source_writes(ec2: Any, revoked: Sequence[dict[str, Any]]) -> int:
    """Authorize the revoked rules again; a rule that is already there is fine. Returns rules re-added."""
    added = 0
    for group in revoked:
        for piece in group.get("IpPermissions", []):
            try:
                ec2.authorize_security_group_ingress(GroupId=group["GroupId"], IpPermissions=[piece])
            except ClientError as exc:
                if error_code(exc) != "InvalidPermission.Duplicate":
                    raise
            else:
                added += 1
    return added


@dataclass
class SecurityGroupWriteBlock:
    """The cutover's write fence at the network (migration.cutover.WriteFence): prepare, block, unblock.

    ``persist`` is called with the rules about to be revoked before any is revoked, so the abort
    path can put them back even if this process dies mid-way (rules never revoked are skipped then).
    After the revoke the groups are described again: a rule still there (AWS answers an unmatched
    revoke with ``UnknownIpPermissions``, no error) fails ``block()``, before the drain.
    Sessions already open are not cut by a security group; the cutover's drain ends them.
    """

    ec2: Any
    security_group_ids: Sequence[str]
    keep_security_group_ids: Sequence[str] = ()
    keep_cidrs: Sequence[str] = ()
    persist: Callable[[list[dict[str, Any]]], None] | None = None
    revoked: list[dict[str, Any]] = field(default_factory=list)
    name: str = "security_group"
    verify_attempts: int = 3
    verify_delay: float = 1.0

    def prepare(self) -> dict[str, Any]:
        """Check the inputs and the groups, and report what block() would revoke; changes nothing."""
        plan = plan_write_block(self.ec2, security_group_ids=self.security_group_ids,
                                keep_security_group_ids=self.keep_security_group_ids, keep_cidrs=self.keep_cidrs)
        return {"security_groups": list(self.security_group_ids),
                "rules_to_revoke": sum(len(g["IpPermissions"]) for g in plan)}

    def block(self) -> dict[str, Any]:
        plan = plan_write_block(self.ec2, security_group_ids=self.security_group_ids,
                                keep_security_group_ids=self.keep_security_group_ids, keep_cidrs=self.keep_cidrs)
        if self.persist:
            self.persist(merge_revoked(self.revoked, plan))
        try:
            revoked = revoke_and_verify(self.ec2, plan, security_group_ids=self.security_group_ids,
                                        keep_security_group_ids=self.keep_security_group_ids,
                                        keep_cidrs=self.keep_cidrs, verify_attempts=self.verify_attempts,
                                        verify_delay=self.verify_delay)
        except WriteBlockError as exc:
            self.revoked = merge_revoked(self.revoked, exc.revoked)
            raise
        self.revoked = merge_revoked(self.revoked, revoked)
        return {"revoked": self.revoked, "rules": sum(len(g["IpPermissions"]) for g in self.revoked)}

    def unblock(self) -> dict[str, Any]:
        return {"restored": restore_source_writes(self.ec2, self.revoked)}


@dataclass
class Route53TargetOpener:
    """The cutover's target opener on AWS (migration.cutover.TargetOpener): the CNAME applications use
    now points at the target's writer endpoint, and, with ``wait``, Route53 has it INSYNC.

    ``prepare()`` reads the record as it is (``state``, journaled at the commit point) so that ``revert()``
    can put it back; ``revert()`` returns True only once Route53 reports the revert INSYNC.
    """

    route53: Any
    hosted_zone_id: str
    record_name: str
    target_host: str
    ttl: int = 30
    wait: bool = True
    name: str = "dns"
    external: bool = True
    state: dict[str, Any] | None = None
    wait_delay: int = 2
    wait_attempts: int = 90

    def prepare(self) -> dict[str, Any]:
        record = current_record(self.route53, hosted_zone_id=self.hosted_zone_id, record_name=self.record_name)
        if record and record.get("Type") != "CNAME":
            raise AwsMigrationError(f"{self.record_name} in hosted zone {self.hosted_zone_id} is a "
                                    f"{record.get('Type')} record, not a CNAME: point cutover.dns_record_name at "
                                    f"a CNAME")
        self.state = {"record_name": self.record_name, "previous": record}
        return {"record_name": self.record_name,
                "previous": record["ResourceRecords"][0]["Value"] if record and record.get("ResourceRecords") else None}

    def open(self) -> dict[str, Any]:
        change = upsert_cname(self.route53, hosted_zone_id=self.hosted_zone_id, record_name=self.record_name,
                              target_host=self.target_host, ttl=self.ttl)
        if self.wait:
            wait_dns_in_sync(self.route53, change_id=change["change_id"], delay=self.wait_delay,
                             max_attempts=self.wait_attempts)
            change["status"] = "INSYNC"
        return {**change, "record_name": self.record_name}

    def revert(self) -> bool:
        """Put the record back as ``prepare()`` found it and wait until that is INSYNC."""
        if self.state is None:
            return False
        previous = self.state["previous"]
        if previous is None:
            record = current_record(self.route53, hosted_zone_id=self.hosted_zone_id, record_name=self.record_name)
            if record is None:
                return True
            change = {"Action": "DELETE", "ResourceRecordSet": record}
        else:
            change = {"Action": "UPSERT", "ResourceRecordSet": previous}
        info = self.route53.change_resource_record_sets(
            HostedZoneId=self.hosted_zone_id,
            ChangeBatch={"Comment": "migration cutover reverted", "Changes": [change]})["ChangeInfo"]
        wait_dns_in_sync(self.route53, change_id=info["Id"], delay=self.wait_delay, max_attempts=self.wait_attempts)
        return True


def current_record(route53: Any, *, hosted_zone_id: str, record_name: str) -> dict[str, Any] | None:
    """The record set named ``record_name`` (any type), or None."""
    wanted = record_name.rstrip(".") + "."
    response = route53.list_resource_record_sets(HostedZoneId=hosted_zone_id, StartRecordName=wanted, MaxItems="1")
    for record in response.get("ResourceRecordSets", []):
        if record.get("Name", "").rstrip(".").lower() == wanted.rstrip(".").lower():
            return record
    return None


# Resolvers keep an answer for the record's TTL: with more than this, clients can reach the source
# for minutes after the cutover (Route 53's INSYNC covers its own name servers only).
DNS_TTL_WARN_SECONDS = 60


def dns_ttl_facts(route53: Any, *, hosted_zone_id: str, record_name: str, cutover_ttl: int) -> dict[str, Any]:
    """The record's TTL now and the cutover's, with a warning when the current one is over 60 s."""
    record = current_record(route53, hosted_zone_id=hosted_zone_id, record_name=record_name)
    ttl = int(record["TTL"]) if record and record.get("TTL") is not None else None
    facts: dict[str, Any] = {"record_name": record_name, "ttl": ttl, "cutover_ttl": int(cutover_ttl),
                             "warning": None}
    if ttl is not None and ttl > DNS_TTL_WARN_SECONDS:
        facts["warning"] = (
            f"DNS record {record_name} has a TTL of {ttl} s: resolvers keep the old answer that long after the "
            f"cutover. The migration lowers it to cutover.dns_ttl ({int(cutover_ttl)} s) after proceed and waits "
            f"{ttl} s before it can cut over; lower it yourself well ahead to avoid that wait")
    return facts


def lower_record_ttl(route53: Any, *, hosted_zone_id: str, record_name: str, ttl: int,
                     wait: bool = True) -> dict[str, Any]:
    """Set the record's TTL to ``ttl`` (its value unchanged) ahead of the cutover; nothing when it is lower already.

    Returns ``{record_name, old_ttl, ttl, changed}``: resolvers may hold the old answer for ``old_ttl``
    seconds more, so the cutover must come at least that long after this.
    """
    if not 0 <= int(ttl) <= 2147483647:
        raise ValueError(f"cutover.dns_ttl: expected seconds from 0, got {ttl!r}")
    record = current_record(route53, hosted_zone_id=hosted_zone_id, record_name=record_name)
    if record is None:
        return {"record_name": record_name, "old_ttl": None, "ttl": int(ttl), "changed": False}
    if record.get("Type") != "CNAME":
        raise AwsMigrationError(f"{record_name} in hosted zone {hosted_zone_id} is a {record.get('Type')} record, "
                                f"not a CNAME: point cutover.dns_record_name at a CNAME")
    old = int(record.get("TTL") or 0)
    if old <= int(ttl):
        return {"record_name": record_name, "old_ttl": old, "ttl": old, "changed": False}
    change = route53.change_resource_record_sets(
        HostedZoneId=hosted_zone_id,
        ChangeBatch={"Comment": f"migration: TTL {old} -> {int(ttl)} s ahead of the cutover",
                     "Changes": [{"Action": "UPSERT", "ResourceRecordSet": {**record, "TTL": int(ttl)}}]},
    )["ChangeInfo"]
    if wait:
        wait_dns_in_sync(route53, change_id=change["Id"])
    return {"record_name": record_name, "old_ttl": old, "ttl": int(ttl), "changed": True}


def upsert_cname(route53: Any, *, hosted_zone_id: str, record_name: str, target_host: str,
                 ttl: int = 30) -> dict[str, Any]:
    """Point the CNAME ``record_name`` at ``target_host``; returns {change_id, previous, status}."""
    if not hosted_zone_id:
        raise ValueError("hosted_zone_id: the Route53 hosted zone id is required (cutover.dns_zone_id)")
    if not record_name or not target_host:
        raise ValueError(f"record_name and target_host are required, got {record_name!r} and {target_host!r}")
    if not 0 <= int(ttl) <= 2147483647:
        raise ValueError(f"ttl: expected seconds from 0, got {ttl!r}")
    existing = current_record(route53, hosted_zone_id=hosted_zone_id, record_name=record_name)
    if existing and existing.get("Type") != "CNAME":
        raise AwsMigrationError(f"{record_name} in hosted zone {hosted_zone_id} is a {existing.get('Type')} record, "
                                f"not a CNAME: remove it or point cutover.dns_record_name at a CNAME")
    previous = existing["ResourceRecords"][0]["Value"] if existing and existing.get("ResourceRecords") else None
    change = route53.change_resource_record_sets(
        HostedZoneId=hosted_zone_id,
        ChangeBatch={
            "Comment": f"migration cutover to {target_host}",
            "Changes": [{"Action": "UPSERT", "ResourceRecordSet": {
                "Name": record_name, "Type": "CNAME", "TTL": int(ttl),
                "ResourceRecords": [{"Value": target_host}]}}],
        },
    )["ChangeInfo"]
    return {"change_id": change["Id"], "status": change.get("Status"), "previous": previous, "target": target_host}


def wait_dns_in_sync(route53: Any, *, change_id: str, delay: int = 2, max_attempts: int = 90) -> None:
    """Block until Route53 reports the change INSYNC on all its name servers."""
    route53.get_waiter("resource_record_sets_changed").wait(
        Id=change_id, WaiterConfig={"Delay": delay, "MaxAttempts": max_attempts})


def stop_db(rds: Any, *, db_type: str, identifier: str) -> str:
    """Stop the source cluster or instance after a successful cutover; its data stays untouched."""
    desc = require_db(rds, db_type=db_type, identifier=identifier, field="the source identifier")
    if desc.status in ("stopped", "stopping"):
        return desc.status
    if desc.status != "available":
        raise AwsMigrationError(f"{identifier} is {desc.status!r}; it can be stopped only when available")
    db_kind(db_type).stop(rds, identifier)
    return "stopping"
