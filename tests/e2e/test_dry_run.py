"""Whole-DAG dry runs on real PostgreSQL (issue 8, scenarios 12 and 8).

A dry run stops at `proceed`: preflight only reads, so the source keeps every replica identity and
gets no slot, publication or control schema, although the YAML allows REPLICA IDENTITY FULL and
dms_sample.mlb_data has no key. And a user schema with tables that the YAML neither migrates nor
excludes fails preflight before anything is created. Stand-ins: none.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.e2e


def _source_state(conn) -> dict:
    return {
        "identities": conn.execute(
            "SELECT array_agg(c.relname::text || '=' || c.relreplident::text ORDER BY c.relname) FROM pg_class c "
            "WHERE c.relnamespace = 'dms_sample'::regnamespace AND c.relkind = 'r'").fetchone()[0],
        "schemas": conn.execute("SELECT array_agg(nspname::text ORDER BY nspname) FROM pg_namespace").fetchone()[0],
        "slots": conn.execute("SELECT count(*) FROM pg_replication_slots").fetchone()[0],
        "publications": conn.execute("SELECT count(*) FROM pg_publication").fetchone()[0],
    }


@pytest.mark.safety
def test_a_dry_run_changes_nothing_on_the_source(local_migration):
    migration = local_migration("e2e_dry_run", rows=300)
    with migration.source_conn() as src:
        before = _source_state(src)
    assert "mlb_data=d" in before["identities"]
    dagrun = migration.run({"dry_run": True})
    states = migration.task_states(dagrun)
    assert states["preflight[0]"] == "success" and states["proceed"] == "success"
    assert states["apply_source_changes"] == "skipped"
    with migration.source_conn() as src:
        assert _source_state(src) == before
    # The report lists what the run would have changed.
    reports = sorted(Path(os.environ["MIGRATION_REPORT_DIR"], migration.dag_id).glob("*/report.json"))
    planned = json.loads(reports[-1].read_text())["source_changes"]
    assert [line for line in planned if line.startswith("planned, not made: table dms_sample.mlb_data: ")], planned


@pytest.mark.safety
def test_a_schema_neither_migrated_nor_excluded_fails_preflight(local_migration):
    migration = local_migration("e2e_left_out", rows=300)
    with migration.source_conn() as src:
        src.execute("CREATE TABLE public.forgotten (id int PRIMARY KEY)")
        before = _source_state(src)
    states = migration.task_states(migration.run())
    assert states["preflight[0]"] == "failed"
    assert "prepare_source.create_slot[0]" not in states or states["prepare_source.create_slot[0]"] != "success"
    with migration.source_conn() as src:
        assert _source_state(src) == before
    # Listed under exclude_schemas in the YAML, the same schema passes (a dry run, so nothing is created).
    path = Path(os.environ["MIGRATIONS_DIR"]) / f"{migration.migration_id}.yaml"
    config = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**config, "exclude_schemas": ["public"]}))
    states = migration.task_states(migration.run({"dry_run": True}))
    assert states["preflight[0]"] == "success" and states["proceed"] == "success"
