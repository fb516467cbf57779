# Two commands for a fresh Debian machine: `make demo` and `make test`.
# Both install what they need: ZooKeeper through apt (as root), Python deps into .venv.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: all test unit demo verify check format bench bench-many clean

all: test

$(STAMP): pyproject.toml scripts/ensure-venv
	PYTHON=$(PYTHON) scripts/ensure-venv $(VENV)
	touch $@

# The tests also validate docker-compose.yml, drive the dashboard in a real browser and check
# the systemd units with systemd's own tools.
test: $(STAMP)
	@scripts/ensure-system-packages zookeeper docker-compose chromium curator systemd
	ELECTION_DAEMON_REQUIRE_BROWSER=1 $(PY) -m pytest $(PYTEST_ARGS)

# The fast tests alone: pure logic, no ZooKeeper (seconds).
unit: $(STAMP)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

demo: $(STAMP)
	@scripts/ensure-system-packages zookeeper
	$(PY) -m election_daemon.cli.demo

# Every fault once against a local ensemble (CI runs this too); the report lands in reports/.
verify: $(STAMP)
	@scripts/ensure-system-packages zookeeper
	$(PY) -m election_daemon verify --quick --report reports/verify

bench: $(STAMP)
	@scripts/ensure-system-packages zookeeper
	$(PY) bench/failover.py

# Many elections on one shared client against the pipelined floor (about 7 minutes).
bench-many: $(STAMP)
	@scripts/ensure-system-packages zookeeper
	$(PY) bench/many.py

check: $(STAMP)
	$(VENV)/bin/ruff check election_daemon tests bench typings
	$(VENV)/bin/ruff format --check election_daemon tests bench typings
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

format: $(STAMP)
	$(VENV)/bin/ruff check --fix election_daemon tests bench typings
	$(VENV)/bin/ruff format election_daemon tests bench typings

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .import_linter_cache *.egg-info build dist reports
