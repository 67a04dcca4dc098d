# Everything from a fresh clone: `make demo` and `make test` create the
# virtualenv, install the project and migrate as needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install migrate demo test test-pg lint serve clean bench bench-smoke bench-scaleout bench-clean soak

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

migrate: install
	mkdir -p var
	$(PY) manage.py migrate --no-input -v 0

demo: migrate
	$(PY) manage.py demo

test: install
	mkdir -p var
	$(VENV)/bin/pytest

test-pg: install
	DATABASE_URL=$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test} $(VENV)/bin/pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

serve: migrate
	bin/serve

# Benchmarks (not part of `make test`; tests/bench runs a smoke of them) in a scratch PostgreSQL database,
# BENCH_DB (created when missing, seeded once and kept; its name must start with "bench").
PROFILES ?= 1000000
BENCH_DB ?= postgres://postgres@127.0.0.1:5432/bench

bench: install
	DATABASE_URL=$(BENCH_DB) $(PY) bench/run.py --profiles $(PROFILES) $(BENCH_ARGS)

bench-smoke: install
	DATABASE_URL=$(BENCH_DB)_smoke $(PY) bench/run.py --smoke --drop

bench-scaleout: install
	DATABASE_URL=$(BENCH_DB) $(PY) bench/scaleout.py

bench-clean: install
	$(PY) -c "from bench import harness; import sys; [harness.drop_database(u) for u in sys.argv[1:]]" \
		$(BENCH_DB) $(BENCH_DB)_$$(( $(PROFILES) / 10 ))

# Fault soaks (worker crashes, partner faults, a PostgreSQL restart, API load) in SOAK_DB, a scratch database
# whose name starts with "soak" (created when missing, emptied by every soak); tests/soak runs small versions.
SOAK_DB ?= postgres://postgres@127.0.0.1:5432/soak

soak: install
	DATABASE_URL=$(SOAK_DB) $(PY) soak/run.py $(SOAK_ARGS)

clean:
	rm -rf $(VENV) var
