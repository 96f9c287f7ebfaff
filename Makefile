# Two commands on a fresh machine: `make demo` and `make test`. Both build .venv from requirements.lock.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum requirements.lock | cut -c1-12)

.PHONY: venv test test-fast lint demo demo-source clean pg-check bench screenshots

$(STAMP): requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

pg-check: venv
	@PYTHONPATH=plugins $(BIN)/python -m migration.localpg

test: pg-check
	PYTHONPATH=plugins:dags $(BIN)/python -m pytest

test-fast: pg-check
	PYTHONPATH=plugins:dags $(BIN)/python -m pytest -m "not e2e and not live"

lint: venv
	$(BIN)/ruff check .

demo: pg-check
	PYTHONPATH=plugins:dags $(BIN)/python scripts/demo.py

# The demo's source server, sample and writer only, for the same migration under a real scheduler.
demo-source: pg-check
	PYTHONPATH=plugins:dags $(BIN)/python scripts/demo.py --serve

clean:
	rm -rf $(VENV) .demo

# The six benchmarks, quick sizes (BENCH_SIZE=full: the issue's sizes). Each prints `bench: ...` lines.
BENCHMARKS := window resolve_start_lsn validation parse fleet in_sync
bench: pg-check
	@set -e; for b in $(BENCHMARKS); do echo "== bench/$$b.py"; PYTHONPATH=plugins:dags $(BIN)/python bench/$$b.py; done

# docs/img/*.png: the Airflow UI during a manual-approval local migration (needs Debian's `chromium`).
screenshots: pg-check
	PYTHONPATH=plugins:dags $(BIN)/python scripts/screenshots.py
