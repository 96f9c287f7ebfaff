"""Issue 8, scenario 4: the DNS change is submitted, then the wait for INSYNC fails.

A whole ``run_cutover`` on real PostgreSQL: a source, a pg_basebackup clone as the target, native
logical replication between them (as tests/integration/test_cutover.py sets it up), the role fence,
the cutover journal on the target. The opener is the product's ``Route53TargetOpener``.

Stood in: Route53 only. Its client is a real botocore client wrapped in botocore's Stubber: no
request leaves the process, every request is validated against Route53's API model, and each
expected request's parameters are asserted exactly (the UPSERT to the target's host, the revert's
UPSERT of the record as it was). The Stubber is used, not moto, because moto reports a change INSYNC
at once and cannot throttle: the failures this scenario is about (a change that stays PENDING until
the waiter gives up, a throttled revert) cannot be made there.
"""

from __future__ import annotations

from datetime import UTC, datetime

import botocore.session
import psycopg
import pytest
from botocore.stub import Stubber
from cutover_helpers import connect, ids, wait_for

from migration.aws.cutover import Route53TargetOpener
from migration.cutover import (
    CutoverAborted,
    CutoverError,
    CutoverPlan,
    NativeCdc,
    NativeCdcDatabase,
    run_cutover,
    unblock_run,
)
from migration.fence import RoleFence, restore_role_fence
from migration.journal import CutoverJournal
from migration.lsn import find_redo_done
from migration.native_cdc import advance_origin, create_publication, create_subscription, subscription_state
from migration.source_quiet import ChangesAfterFinalLsn, SlotCheck, SourceDrain, bound_session
from migration.target_prep import disable_user_triggers, enable_triggers

pytestmark = [pytest.mark.integration, pytest.mark.aws]

CONTROL = "migration_control"
ZONE = "Z0123456789ABCDEFGHIJ"
RECORD = "orders.db.example.internal"
SOURCE_HOST = "orders-src.cluster-x.us-east-1.rds.amazonaws.com"
TARGET_HOST = "orders-tgt.cluster-y.us-east-1.rds.amazonaws.com"
PREVIOUS = {"Name": f"{RECORD}.", "Type": "CNAME", "TTL": 60, "ResourceRecords": [{"Value": SOURCE_HOST}]}
WAIT_ATTEMPTS = 3

SETUP_CLUSTER = [
    "CREATE ROLE app_group NOLOGIN",
    "CREATE ROLE app_rw LOGIN IN ROLE app_group",
    "CREATE ROLE repl LOGIN REPLICATION",
    "CREATE DATABASE appdb",
]
SETUP_APPDB = [
    "CREATE SCHEMA app",
    "CREATE TABLE app.items (id serial PRIMARY KEY, v text NOT NULL)",
    "CREATE TABLE app.audit (item_id int PRIMARY KEY)",
    """CREATE FUNCTION app.audit_item() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN INSERT INTO app.audit VALUES (NEW.id); RETURN NEW; END $$""",
    "CREATE TRIGGER audit_item AFTER INSERT ON app.items FOR EACH ROW EXECUTE FUNCTION app.audit_item()",
    "GRANT USAGE ON SCHEMA app TO app_group",
    "GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA app TO app_group",
    "GRANT USAGE ON ALL SEQUENCES IN SCHEMA app TO app_group",
    "INSERT INTO app.items (v) SELECT 'before' FROM generate_series(1, 20)",
]


def app_can_write(server) -> bool:
    """The application's login writes on the source (a new session, as a client would open)."""
    try:
        with connect(server, "appdb", user="app_rw") as app:
            app.execute("INSERT INTO app.items (v) VALUES ('app')")
        return True
    except psycopg.Error:
        return False


def trigger_state(conn) -> str:
    return conn.execute("SELECT tgenabled FROM pg_trigger WHERE tgname = 'audit_item'").fetchone()[0]


class Replication:
    """A source with appdb, replicated into its pg_basebackup clone by native CDC, as the DAG sets it up."""

    def __init__(self, pg_servers, name: str):
        self.source = source = pg_servers.new(f"dns{name}")
        with connect(source) as conn:
            for statement in SETUP_CLUSTER:
                conn.execute(statement)
        with connect(source, "appdb") as conn:
            for statement in SETUP_APPDB:
                conn.execute(statement)
        self.slot, self.subscription, self.publication = f"slot_{name}", f"sub_{name}", "pub_dns"
        with connect(source, "appdb") as src:
            create_publication(src, self.publication, ["app"])
            src.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (self.slot,))
        self.target = pg_servers.clone(source)
        captured = find_redo_done(self.target.log_text())
        with connect(self.target, "appdb") as tgt:
            self.enable_ddl = disable_user_triggers(tgt, ["app"], control_schema=CONTROL)
            create_subscription(tgt, self.subscription, source.conninfo("appdb"), self.publication, self.slot)
            advance_origin(tgt, self.subscription, captured)

    def journal(self, conn, run_id: str) -> CutoverJournal:
        return CutoverJournal(conn=conn, control_schema=CONTROL, migration_id="orders", run_id=run_id).ensure()

    def plan(self, src, tgt, run_id: str, opener: Route53TargetOpener) -> CutoverPlan:
        """What CutoverOperator builds for the role fence, native CDC and a DNS opener (prepare() included)."""
        for conn in (src, tgt):
            bound_session(conn, lock_timeout_s=2, statement_timeout_s=30, run=run_id)
        journal = self.journal(tgt, run_id)
        keep = [src.info.backend_pid]
        opener.prepare()
        return CutoverPlan(
            journal=journal,
            fence=RoleFence(conn=src, journal=journal, databases=["appdb"], replication_role="repl",
                            roles=["app_group"], keep_pids=keep),
            drain=SourceDrain(conn=src, databases=["appdb"], keep_pids=keep),
            cdc=NativeCdc(source_conn=src, links=[NativeCdcDatabase("appdb", self.slot, self.subscription, tgt)]),
            proof=ChangesAfterFinalLsn(checks=[SlotCheck("appdb", src, self.slot, "pgoutput", self.publication)],
                                       databases=["appdb"], keep_pids=keep),
            opener=opener, databases=["appdb"],
            after_stop=[("enable_triggers", lambda: enable_triggers(tgt, self.enable_ddl))],
            undo_after_stop=[("disable_triggers", lambda: disable_user_triggers(tgt, ["app"], control_schema=CONTROL))],
            drain_timeout_s=30, resume_hint=NativeCdc.resume_hint())

    def restore(self, records) -> list[str]:
        """The teardown's restore for the role fence, on a session of its own (read-only lifted, as
        connections.postgres.connect does: the fence makes the cutover's own login start read-only too)."""
        with connect(self.source, "appdb") as src:
            src.execute("SET default_transaction_read_only = off")
            return restore_role_fence(src, records)


# ---------------------------------------------------------------- Route53, stubbed

class Route53:
    """A real botocore Route53 client behind a Stubber; ``expect_*`` queue the exact requests expected."""

    def __init__(self):
        self.client = botocore.session.get_session().create_client(
            "route53", region_name="us-east-1", aws_access_key_id="stub", aws_secret_access_key="stub")
        self.stub = Stubber(self.client)
        self.changes = 0

    def opener(self) -> Route53TargetOpener:
        self.stub.activate()
        return Route53TargetOpener(self.client, hosted_zone_id=ZONE, record_name=RECORD, target_host=TARGET_HOST,
                                   ttl=30, wait_delay=0, wait_attempts=WAIT_ATTEMPTS)

    def expect_read(self, value: str) -> None:
        record = {**PREVIOUS, "ResourceRecords": [{"Value": value}]}
        self.stub.add_response("list_resource_record_sets",
                               {"ResourceRecordSets": [record], "IsTruncated": False, "MaxItems": "1"},
                               {"HostedZoneId": ZONE, "StartRecordName": f"{RECORD}.", "MaxItems": "1"})

    def _change_id(self) -> str:
        self.changes += 1
        return f"/change/C{self.changes:04d}"

    def expect_change(self, batch: dict, *, error: str | None = None) -> str | None:
        params = {"HostedZoneId": ZONE, "ChangeBatch": batch}
        if error:
            self.stub.add_client_error("change_resource_record_sets", service_error_code=error,
                                       service_message="Rate exceeded", http_status_code=400, expected_params=params)
            return None
        change_id = self._change_id()
        self.stub.add_response("change_resource_record_sets", {"ChangeInfo": {
            "Id": change_id, "Status": "PENDING", "SubmittedAt": datetime.now(UTC)}}, params)
        return change_id

    def expect_open(self) -> str:
        """open(): the record is read, then the UPSERT to the target's host is submitted."""
        self.expect_read(SOURCE_HOST)
        return self.expect_change({"Comment": f"migration cutover to {TARGET_HOST}", "Changes": [{
            "Action": "UPSERT", "ResourceRecordSet": {"Name": RECORD, "Type": "CNAME", "TTL": 30,
                                                      "ResourceRecords": [{"Value": TARGET_HOST}]}}]})

    def expect_revert(self, *, error: str | None = None) -> str | None:
        """revert(): the record as prepare() read it is put back."""
        return self.expect_change({"Comment": "migration cutover reverted",
                                   "Changes": [{"Action": "UPSERT", "ResourceRecordSet": PREVIOUS}]}, error=error)

    def expect_status(self, change_id: str, *statuses: str, error: str | None = None) -> None:
        for status in statuses:
            self.stub.add_response("get_change", {"ChangeInfo": {
                "Id": change_id, "Status": status, "SubmittedAt": datetime.now(UTC)}}, {"Id": change_id})
        if error:
            self.stub.add_client_error("get_change", service_error_code=error, service_message="Rate exceeded",
                                       http_status_code=400, expected_params={"Id": change_id})

    def done(self) -> None:
        self.stub.assert_no_pending_responses()
        self.stub.deactivate()


# ---------------------------------------------------------------- the tests

@pytest.mark.safety
@pytest.mark.parametrize("revert_fails_at", ["change_resource_record_sets", "get_change"])
def test_dns_wait_fails_and_the_revert_is_not_confirmed_so_the_source_stays_fenced(pg_servers, revert_fails_at):
    """Case A: the CNAME was submitted, INSYNC never came, the revert was throttled: the source must
    not reopen. The teardown refuses (unless forced); a rerun of the run resumes at the commit point."""
    repl = Replication(pg_servers, f"a{revert_fails_at[:3]}")
    # The application has a session open through the cutover, and has written through it.
    app = connect(repl.source, "appdb", user="app_rw")
    written = [app.execute("INSERT INTO app.items (v) VALUES ('app') RETURNING id").fetchone()[0] for _ in range(30)]
    with connect(repl.source, "appdb") as src, connect(repl.target, "appdb") as tgt:
        dns = Route53()
        dns.expect_read(SOURCE_HOST)  # prepare()
        change = dns.expect_open()
        dns.expect_status(change, *["PENDING"] * WAIT_ATTEMPTS)  # the waiter gives up
        if revert_fails_at == "change_resource_record_sets":
            dns.expect_revert(error="Throttling")
        else:
            dns.expect_status(dns.expect_revert(), error="Throttling")
        with pytest.raises(CutoverAborted) as aborted:
            run_cutover(repl.plan(src, tgt, "run_a", dns.opener()))
        dns.done()

        error = aborted.value
        assert error.fence_kept is True and error.failed_step == "open_target"
        assert "STAYS FENCED" in str(error) and "Max attempts exceeded" in str(error)
        # The next step is named: finish the opening, or restore by force once DNS points at the source.
        assert "clear cutover.switch_over" in str(error) and "force_restore" in str(error)
        steps = {s["step"]: s for s in error.timeline["steps"]}
        assert steps["open_target"]["ok"] is False and steps["revert_open"]["ok"] is False
        assert "restore_writes" not in steps and "resume_cdc" not in steps
        # The source is still fenced: the application's session was ended, and it can neither connect nor write.
        with pytest.raises(psycopg.OperationalError):
            app.execute("INSERT INTO app.items (v) VALUES ('after the fence')")
        app.close()
        assert not app_can_write(repl.source)

        # The journal, read on a fresh session as the teardown would: commit point passed, target not open.
        with connect(repl.target, "appdb") as other:
            journal = repl.journal(other, "run_a")
            state = journal.read()
            assert state.commit_point["opener"] == "dns" and state.commit_point["external"] is True
            assert state.commit_point["opener_state"]["previous"] == PREVIOUS
            assert state.target_open is None and state.fenced
            assert state.step("open_target") == "failed" and state.step("revert_open") == "failed"
            assert state.outcome["state"] == "fence_kept"
            # The teardown refuses to reopen the source from this state, and changes nothing.
            with pytest.raises(CutoverError, match="passed its commit point"):
                unblock_run(journal, repl.restore)
            assert not app_can_write(repl.source)
            assert journal.read().fenced

        # Next step 1: rerun the cutover for the same run with Route53 answering; only the opening runs.
        dns = Route53()
        dns.expect_read(TARGET_HOST)  # prepare(): the first try's UPSERT went through
        dns.expect_read(TARGET_HOST)
        change = dns.expect_change({"Comment": f"migration cutover to {TARGET_HOST}", "Changes": [{
            "Action": "UPSERT", "ResourceRecordSet": {"Name": RECORD, "Type": "CNAME", "TTL": 30,
                                                      "ResourceRecords": [{"Value": TARGET_HOST}]}}]})
        dns.expect_status(change, "PENDING", "INSYNC")
        timeline = run_cutover(repl.plan(src, tgt, "run_a", dns.opener()))
        dns.done()
        assert timeline["status"] == "completed"
        assert [s["step"] for s in timeline["steps"]] == ["open_target", "finish_cdc"]
        state = repl.journal(tgt, "run_a").read()
        assert state.target_open["endpoint"]["status"] == "INSYNC" and state.outcome["state"] == "completed"
        # Nothing the application saw committed is missing from the target.
        assert ids(src) == ids(tgt) and set(written) <= set(ids(tgt))
        assert subscription_state(tgt, repl.subscription) is None
        # Open now: the teardown leaves the source fenced, unless forced (the application moved back).
        assert unblock_run(repl.journal(tgt, "run_a"), repl.restore)["restored"] == []
        assert not app_can_write(repl.source)
        assert unblock_run(repl.journal(tgt, "run_a"), repl.restore, force=True)["restored"]
        assert app_can_write(repl.source)


@pytest.mark.safety
def test_dns_wait_fails_and_the_revert_is_not_confirmed_then_a_forced_teardown_reopens_the_source(pg_servers):
    """Case A, next step 2: the operator put the record back by hand and forces the teardown."""
    repl = Replication(pg_servers, "aforce")
    with connect(repl.source, "appdb") as src, connect(repl.target, "appdb") as tgt:
        dns = Route53()
        dns.expect_read(SOURCE_HOST)
        dns.expect_status(dns.expect_open(), *["PENDING"] * WAIT_ATTEMPTS)
        dns.expect_status(dns.expect_revert(), "PENDING", error="Throttling")
        with pytest.raises(CutoverAborted) as aborted:
            run_cutover(repl.plan(src, tgt, "run_f", dns.opener()))
        dns.done()
        assert aborted.value.fence_kept is True
        assert not app_can_write(repl.source)

        with connect(repl.target, "appdb") as other:
            journal = repl.journal(other, "run_f")
            with pytest.raises(CutoverError, match="passed its commit point"):
                unblock_run(journal, repl.restore)
            assert not app_can_write(repl.source)
            restored = unblock_run(journal, repl.restore, force=True)
            assert restored["restored"]
            state = journal.read()
            assert not state.fenced and state.commit_point is None and state.target_open is None
            assert state.outcome["state"] == "restored" and state.outcome["forced"] is True
        assert app_can_write(repl.source)


@pytest.mark.safety
def test_dns_wait_fails_and_the_revert_is_confirmed_so_the_source_reopens(pg_servers):
    """Case B: INSYNC never came for the opening, the revert did: the abort restores the source's writes."""
    repl = Replication(pg_servers, "b")
    with connect(repl.source, "appdb") as src, connect(repl.target, "appdb") as tgt:
        dns = Route53()
        dns.expect_read(SOURCE_HOST)
        dns.expect_status(dns.expect_open(), *["PENDING"] * WAIT_ATTEMPTS)
        dns.expect_status(dns.expect_revert(), "PENDING", "INSYNC")
        with pytest.raises(CutoverAborted) as aborted:
            run_cutover(repl.plan(src, tgt, "run_b", dns.opener()))
        dns.done()

        error = aborted.value
        assert error.fence_kept is False and error.failed_step == "open_target"
        assert "restored exactly" in str(error) and "resumed where it stopped" in str(error)
        steps = {s["step"]: s for s in error.timeline["steps"]}
        assert steps["revert_open"]["ok"] and steps["revert_open"]["detail"] is True
        assert steps["disable_triggers"]["ok"] and steps["resume_cdc"]["ok"] and steps["restore_writes"]["ok"]
        assert error.timeline["status"] == "aborted"
        # The application writes on the source again, and CDC carries it to the target.
        assert app_can_write(repl.source)
        state = repl.journal(tgt, "run_b").read()
        assert state.commit_point is None and state.target_open is None and not state.fenced
        assert state.step("revert_open") == "done" and state.outcome["state"] == "aborted"
        assert trigger_state(tgt) == "D"
        wait_for(lambda: ids(tgt) == ids(src), 60, "CDC to catch up after the abort")
        assert unblock_run(repl.journal(tgt, "run_b"), repl.restore)["note"] == "nothing is fenced by this run"


@pytest.mark.safety
def test_a_rerun_at_the_commit_point_reverts_to_the_record_as_it_was_before_the_cutover(pg_servers):
    """Case A, then the rerun's opening fails too and its revert is confirmed: the revert must put back
    the record as it was before the cutover (the source), since that is what the source's reopening means."""
    repl = Replication(pg_servers, "rerun")
    with connect(repl.source, "appdb") as src, connect(repl.target, "appdb") as tgt:
        dns = Route53()
        dns.expect_read(SOURCE_HOST)
        dns.expect_status(dns.expect_open(), *["PENDING"] * WAIT_ATTEMPTS)
        dns.expect_revert(error="Throttling")
        with pytest.raises(CutoverAborted) as aborted:
            run_cutover(repl.plan(src, tgt, "run_r", dns.opener()))
        dns.done()
        assert aborted.value.fence_kept is True

        # The rerun: the first UPSERT went through, so the record now names the target.
        dns = Route53()
        sent: list[dict] = []
        dns.client.meta.events.register(
            "provide-client-params.route53.ChangeResourceRecordSets",
            lambda params, **_: sent.append(params["ChangeBatch"]["Changes"][0]))
        dns.expect_read(TARGET_HOST)  # prepare()
        dns.expect_read(TARGET_HOST)
        change = dns.expect_change({"Comment": f"migration cutover to {TARGET_HOST}", "Changes": [{
            "Action": "UPSERT", "ResourceRecordSet": {"Name": RECORD, "Type": "CNAME", "TTL": 30,
                                                      "ResourceRecords": [{"Value": TARGET_HOST}]}}]})
        dns.expect_status(change, *["PENDING"] * WAIT_ATTEMPTS)
        # The revert is accepted and confirmed whatever it sends; what it sent is checked below.
        revert_id = dns._change_id()
        dns.stub.add_response("change_resource_record_sets", {"ChangeInfo": {
            "Id": revert_id, "Status": "PENDING", "SubmittedAt": datetime.now(UTC)}})
        dns.expect_status(revert_id, "INSYNC")
        with pytest.raises(CutoverAborted) as aborted:
            run_cutover(repl.plan(src, tgt, "run_r", dns.opener()))
        dns.done()
        reverted_to = sent[-1]["ResourceRecordSet"]["ResourceRecords"][0]["Value"]
        reopened = app_can_write(repl.source)
        assert not reopened or reverted_to == SOURCE_HOST, (
            f"the source reopened while the revert pointed {RECORD} at {reverted_to}, not at the source "
            f"({SOURCE_HOST}) as before the cutover")
        assert sent[-1] == {"Action": "UPSERT", "ResourceRecordSet": PREVIOUS}
        assert aborted.value.fence_kept is False and reopened
        # As after any abort once CDC had stopped: the target's triggers are disabled again, CDC resumes.
        assert trigger_state(tgt) == "D"
        wait_for(lambda: ids(tgt) == ids(src), 60, "CDC to catch up after the abort")


@pytest.mark.safety
def test_a_revert_that_is_not_confirmed_never_lets_the_teardown_reopen_the_source(pg_servers):
    """The opener cannot revert (it never read the record it would put back: revert() returns False):
    the abort keeps the fence, and so must the teardown."""
    repl = Replication(pg_servers, "noconfirm")
    with connect(repl.source, "appdb") as src, connect(repl.target, "appdb") as tgt:
        dns = Route53()
        dns.expect_read(SOURCE_HOST)  # the plan's prepare()
        dns.expect_status(dns.expect_open(), *["PENDING"] * WAIT_ATTEMPTS)
        plan = repl.plan(src, tgt, "run_n", dns.opener())
        plan.opener.state = None  # what it would put back is unknown: revert() cannot confirm anything
        with pytest.raises(CutoverAborted) as aborted:
            run_cutover(plan)
        dns.done()
        assert aborted.value.fence_kept is True
        assert not app_can_write(repl.source)
        with connect(repl.target, "appdb") as other:
            with pytest.raises(CutoverError, match="passed its commit point"):
                unblock_run(repl.journal(other, "run_n"), repl.restore)
        assert not app_can_write(repl.source)
