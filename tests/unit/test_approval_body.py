"""The approval page's body says when its numbers were measured and what is checked again after approval.

Pure logic (`migration.guardrails.summary`, which the gate renders as the HITL body); nothing stood in.
The whole-DAG test tests/e2e/test_rerun_after_cutover.py reads the body the REST API serves.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from migration import guardrails

STEPS = ["block writes", "open the target"]


def body_at(now: datetime) -> str:
    return guardrails.summary(guardrails.Guardrails(1000), lag_bytes={"app": 12, "crm": 0},
                              validation={"app": {"rows_compared": 99, "mismatched_chunks": 0},
                                          "crm": {"rows_compared": 5, "mismatched_chunks": 0}},
                              steps=STEPS, now=now)


def test_the_lag_carries_the_utc_time_it_was_measured():
    body = body_at(datetime(2026, 12, 2, 1, 7, 42, 900_000, tzinfo=UTC))
    lines = body.splitlines()
    heading = lines.index("### Replication lag (measured 2026-12-02 01:07:42 UTC)")
    # The lag lines follow their heading directly.
    assert lines[heading + 2:heading + 4] == ["- `app`: 12 bytes (limit 1000)", "- `crm`: 0 bytes (limit 1000)"]


def test_a_time_with_another_offset_is_shown_in_utc():
    body = body_at(datetime(2026, 12, 2, 3, 7, 42, tzinfo=timezone(timedelta(hours=2))))
    assert "(measured 2026-12-02 01:07:42 UTC)" in body
    assert "03:07:42" not in body.split("### Window")[0]


def test_the_body_says_what_is_checked_again_after_approval():
    body = body_at(datetime(2026, 12, 2, 1, 7, 42, tzinfo=UTC))
    after = body.split("### After approval (this page: 2026-12-02 01:07:42 UTC)")[1]
    assert "`check_guardrails` measures again before anything changes on the source" in after
    for rechecked in ("replication lag", "schema drift", "the slots", "the window"):
        assert rechecked in after
    # What is not measured again is said too.
    assert "Validation is not run again" in after
    assert after.rstrip().endswith("Rejecting leaves the source untouched.")


def test_utc_stamp_takes_a_naive_time_as_utc():
    assert guardrails.utc_stamp(datetime(2026, 12, 2, 1, 7, 42)) == "2026-12-02 01:07:42 UTC"
