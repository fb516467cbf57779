# Two commands for a fresh Debian machine: `make demo` and `make test`.
# Both install what they need: ZooKeeper through apt (as root), Python deps into .venv.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: all test demo check format bench deps zookeeper clean

all: test

$(STAMP): pyproject.toml scripts/ensure-venv
	PYTHON=$(PYTHON) scripts/ensure-venv $(VENV)
	touch $@

zookeeper:
	@scripts/ensure-zookeeper

deps: $(STAMP) zookeeper

test: deps
	$(PY) -m pytest $(PYTEST_ARGS)

demo: deps
	$(PY) -m election_daemon.demo

bench: deps
	$(PY) bench/failover.py

check: $(STAMP)
	$(VENV)/bin/ruff check election_daemon tests bench
	$(VENV)/bin/ruff format --check election_daemon tests bench
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff check --fix election_daemon tests bench
	$(VENV)/bin/ruff format election_daemon tests bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
