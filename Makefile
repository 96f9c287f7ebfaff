# Two commands on a fresh machine: `make demo` and `make test`. Both build .venv from requirements.lock.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum requirements.lock | cut -c1-12)

.PHONY: venv test test-fast lint demo clean pg-check bench screenshots

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

clean:
	rm -rf $(VENV) .demo

bench: pg-check
	PYTHONPATH=plugins:dags $(BIN)/python bench/resolve_start_lsn.py

# docs/img/*.png: the Airflow UI during a manual-approval local migration (needs Debian's `chromium`).
screenshots: pg-check
	PYTHONPATH=plugins:dags $(BIN)/python scripts/screenshots.py
