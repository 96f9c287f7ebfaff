"""The cutover guardrails and the report rendering (pure logic)."""

from datetime import UTC, datetime

import pytest

from migration import guardrails
from migration.report import render_markdown, write_report

NOW = datetime(2026, 12, 5, 2, 0, tzinfo=UTC)


def test_window_states():
    assert guardrails.window_state(NOW, None, None) == "open"
    assert guardrails.window_state(NOW, "2026-12-05T03:00:00+00:00", None) == "early"
    assert guardrails.window_state(NOW, "2026-12-05T01:00:00+00:00", "2026-12-05T01:30:00+00:00") == "closed"
    # Offsets are honoured: 03:00+02:00 is 01:00 UTC, already past.
    assert guardrails.window_state(NOW, "2026-12-05T03:00:00+02:00", None) == "open"


def test_problems_name_each_database_and_rule():
    rails = guardrails.Guardrails(max_lag_bytes=1000, not_after="2026-12-05T01:00:00+00:00")
    found = guardrails.problems(rails, lag_bytes={"app": 5000, "ok": 10},
                                validation={"app": {"mismatched_chunks": 2}, "ok": {"mismatched_chunks": 0}}, now=NOW)
    assert any("database app: replication lag 5000 bytes" in p for p in found)
    assert any("database app: validation is not clean" in p for p in found)
    assert any("window closed" in p for p in found)
    assert not any("database ok" in p for p in found)
    assert guardrails.problems(guardrails.Guardrails(1000), lag_bytes={"ok": 10},
                               validation={"ok": {"mismatched_chunks": 0}}, now=NOW) == []


def test_gate_summary_lists_lag_validation_and_steps():
    body = guardrails.summary(guardrails.Guardrails(1000), lag_bytes={"app": 12},
                              validation={"app": {"rows_compared": 99, "mismatched_chunks": 0}},
                              steps=["block writes", "open the target"], now=NOW)
    assert "`app`: 12 bytes" in body and "99 rows compared" in body
    assert "1. block writes" in body and "2. open the target" in body and "all clear" in body


@pytest.mark.safety
def test_gate_refuses_a_validation_result_of_another_run_and_shows_what_this_run_compared():
    rails = guardrails.Guardrails(max_lag_bytes=1000)
    clean_elsewhere = {"clean": True, "mismatched_chunks": 0, "failures": [], "tables": 1, "rows_compared": 10,
                       "run_id": "manual__earlier"}
    found = guardrails.problems(rails, lag_bytes={"app": 0}, validation={"app": clean_elsewhere}, now=NOW,
                                run_id="manual__now")
    assert found == ["database app: the validation result is from run manual__earlier, not this run "
                     "(manual__now); validate again in this run"]
    this_run = {**clean_elsewhere, "run_id": "manual__now", "tables": 2, "rows_compared": 1500,
                "by_schema": {"app": {"tables": 1, "rows": 1000}, "extra": {"tables": 1, "rows": 500}}}
    assert guardrails.problems(rails, lag_bytes={"app": 0}, validation={"app": this_run}, now=NOW,
                               run_id="manual__now") == []
    body = guardrails.summary(rails, lag_bytes={"app": 0}, validation={"app": this_run}, steps=[], now=NOW,
                              run_id="manual__now")
    assert ("`app`: 2 tables, 1500 rows compared (`app`: 1 tables, 1000 rows; `extra`: 1 tables, 500 rows) "
            "in run `manual__now`, 0 mismatched chunks") in body


@pytest.mark.safety
def test_schema_drift_refuses_the_cutover_and_the_gate_names_each_object():
    drift = {"app": ['column "s"."t".note: only on the source (text null)'], "ok": []}
    found = guardrails.problems(guardrails.Guardrails(1000), lag_bytes={"app": 0, "ok": 0},
                                validation={"app": {"mismatched_chunks": 0}, "ok": {"mismatched_chunks": 0}},
                                now=NOW, drift=drift)
    assert len(found) == 1 and found[0].startswith("database app: schema drift between source and target in 1 object")
    assert 'column "s"."t".note: only on the source (text null)' in found[0]
    body = guardrails.summary(guardrails.Guardrails(1000), lag_bytes={"app": 0}, validation={}, steps=[], now=NOW,
                              drift=drift)
    assert "- `app`: 1 object(s) differ" in body and "- `ok`: none" in body
    assert '  - column "s"."t".note: only on the source (text null)' in body and "all clear" not in body


def test_report_renders_timeline_validation_and_chart(tmp_path):
    report = {"migration_id": "m", "run_id": "r1", "outcome": "cut over", "initial_load": "pg_basebackup",
              "cdc_engine": "native", "databases": ["app"], "write_blocked_seconds": 0.4321,
              "timeline": [{"name": "block_writes", "started_at": "t0", "seconds": 0.01, "detail": "a|b"}],
              "validation": [{"database": "app", "tables": 7, "rows": 1234, "mismatched_chunks": 0}],
              "cleanup": ["dropped slot s"]}
    text = render_markdown(report)
    assert "**0.432 s**" in text and "| block_writes | t0 | 0.010 | a\\|b |" in text
    assert "Rows validated: 1234 in 7 tables." in text and "- dropped slot s" in text
    samples = [{"database": "app", "sampled_at": f"2026-12-05T02:00:0{i}+00:00", "lag_bytes": 100 - i}
               for i in range(5)]
    path = write_report(report, tmp_path, samples)
    assert (tmp_path / "lag.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![lag over time](lag.png)" in path.read_text()
