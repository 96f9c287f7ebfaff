"""docs/SAFETY.md is the list of cutover promises: every test it names exists and is marked `safety`,
and every `safety` test is in it. Collection only (pytest in a subprocess); nothing else runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_safety_doc_and_safety_tests_match():
    listed = set(re.findall(r"`(tests/[\w/]+\.py::\w+)`", (ROOT / "docs" / "SAFETY.md").read_text()))
    done = subprocess.run([sys.executable, "-m", "pytest", "-m", "safety", "--collect-only", "-q",
                           "-p", "no:cacheprovider", "tests"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    collected = {re.sub(r"\[.*\]$", "", line) for line in done.stdout.splitlines() if "::" in line}
    assert collected, done.stdout + done.stderr
    assert sorted(listed - collected) == [], "named in docs/SAFETY.md but not a collected safety test"
    assert sorted(collected - listed) == [], "safety tests missing from docs/SAFETY.md"
