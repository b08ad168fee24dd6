# resend-imports: `make demo` tries it on the bundled simulator, `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
AIRFLOW_VENV := .venv-airflow
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed

.PHONY: install postgres-server demo run test reliability bench bench-smoke airflow-check lint clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "resend-imports needs Python 3.11 or newer (set PYTHON=...)")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=24"
	PYTHONWARNINGS=ignore $(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,postgres,lakehouse]'
	touch $(STAMP)

demo: install
	$(BIN)/resend-imports demo

run: install
	$(BIN)/resend-imports sync

# The tests start throwaway PostgreSQL servers (Debian's server binaries) and run the README's
# shell blocks (curl): both installed when missing.
postgres-server:
	@{ ls /usr/lib/postgresql/*/bin/initdb && command -v curl; } > /dev/null 2>&1 \
	|| { test "$$(id -u)" = 0 && apt-get update -qq \
	     && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql curl > /dev/null; } \
	|| { echo "the tests need PostgreSQL's server binaries and curl: run 'apt-get install postgresql curl' as root"; exit 1; }

# One worker per core (pytest-xdist): each worker starts its own throwaway PostgreSQL server.
test: install postgres-server
	$(BIN)/pytest -n auto

# Soak under faults, SIGKILL trials, rate limits, the PostgreSQL fault matrix, alert delivery
# under a failing receiver: heavier, run by CI too.
reliability: install postgres-server
	$(BIN)/pytest -m reliability

# Our connector against dlt's rest_api source and a hand-written loop (heavy: minutes).
bench: install postgres-server
	$(BIN)/python -m benchmarks.bench $(BENCH_ARGS)

# The same on 2,000 imports, one round: checks the harness and our figures, run by CI.
bench-smoke: install postgres-server
	$(BIN)/python -m benchmarks.bench --imports 2000 --rounds 1 --scale "" --check

$(AIRFLOW_STAMP): pyproject.toml constraints-airflow.txt
	test -x $(AIRFLOW_VENV)/bin/python || $(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=24"
	PYTHONWARNINGS=ignore $(AIRFLOW_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -c constraints-airflow.txt -e '.[airflow,dev,postgres]'
	touch $(AIRFLOW_STAMP)

# The DAG on a real Airflow 3 (throwaway SQLite AIRFLOW_HOME per test), run by CI too.
airflow-check: $(AIRFLOW_STAMP) postgres-server
	$(AIRFLOW_VENV)/bin/pytest -m airflow tests/airflow

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) $(AIRFLOW_VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info demo.duckdb
