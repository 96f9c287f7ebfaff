"""The report of a cutover that did not complete says why: the failing step's error and the proof's result."""

from __future__ import annotations

from migration.report import render_markdown


def _report(**extra) -> dict:
    return {"migration_id": "m", "run_id": "r1", "initial_load": "pg_basebackup", "cdc_engine": "native",
            "databases": ["app"], "write_blocked_seconds": 0.2, **extra}


def test_a_failed_step_shows_its_error_and_the_proof_its_result():
    error = "CutoverError: writes reached the source after its final LSN. Sessions: postgres@app (writer|x)"
    text = render_markdown(_report(
        outcome="aborted at prove_source_quiet; source writes restored",
        timeline=[{"name": "stop_cdc", "started_at": "t0", "seconds": 0.01, "detail": "stopped"},
                  {"name": "prove_source_quiet", "started_at": "t1", "seconds": 0.005, "detail": None,
                   "error": error}],
        source_quiet_proof={"ok": False, "detail": None, "error": error}))
    assert "| stop_cdc | t0 | 0.010 | stopped |" in text
    assert "| prove_source_quiet | t1 | 0.005 | FAILED: CutoverError: writes reached the source after its final LSN. " \
           "Sessions: postgres@app (writer\\|x) |" in text
    assert f"- Proof that nothing committed after the final LSN is missing: **failed**: {error}" in text


def test_a_passed_proof_says_so_and_a_report_without_one_says_nothing():
    passed = render_markdown(_report(outcome="cut over", source_quiet_proof={"ok": True, "detail": {}, "error": None}))
    assert "- Proof that nothing committed after the final LSN is missing: **passed**" in passed
    assert "Proof that nothing" not in render_markdown(_report(outcome="no cutover"))
