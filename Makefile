# Everything runs from a fresh clone with only python3 (>= 3.11): the venv is created and reused.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
# The suite runs on WORKERS pytest-xdist processes, a test file each at a time (its module fixtures, a gateway and an
# index, start once): half of an end-to-end test's time is waiting on a subprocess or a deliberate timeout, so two
# workers on two cores halve the run. WORKERS=0 runs in this process (for a debugger).
WORKERS ?= 2
XDIST := $(if $(filter 0,$(WORKERS)),,-n $(WORKERS) --dist loadfile)

.PHONY: install run test test-tools coverage lint format bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("python >= 3.11 is required, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	@$(VENV)/bin/upload-gateway serve

# What pip cannot install and the e2e suite runs: Prometheus and promtool (tests/e2e/test_prometheus.py) and
# Debian's Chromium at /usr/bin/chromium (tests/e2e/test_web.py, through Playwright), PostgreSQL's server
# binaries (tests/harness/postgresql.py), and nginx (tests/harness/nginx.py: `nginx -t` of config/nginx/gateway.conf,
# and the replicas behind it). .ci/run installs them as root.
test-tools:
	@missing=""; \
	{ command -v prometheus && command -v promtool; } >/dev/null || missing=" prometheus"; \
	test -x /usr/bin/chromium || missing="$$missing chromium"; \
	ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing="$$missing postgresql"; \
	{ command -v nginx || test -x /usr/sbin/nginx; } >/dev/null || missing="$$missing nginx-light"; \
	if [ -n "$$missing" ]; then \
		echo "make test needs the Debian package(s)$$missing: sudo apt-get update && sudo apt-get install -y$$missing (or run .ci/run as root, which does)" >&2; \
		exit 1; \
	fi

test: test-tools $(STAMP)
	$(PY) -m pytest $(XDIST) $(PYTEST_ARGS)

# The same tests as `make test`, each once, under coverage (issue #17): first the unit and integration tests, whose
# share of gateway/ must stay at UNIT_FLOOR percent, then the e2e tests, whose gateway subprocesses are measured too
# (pyproject.toml's [tool.coverage.run]); with them the whole suite must stay at SUITE_FLOOR. Raise a floor when
# the figure rises; never lower one to let a change in. Measured in a clean clone's CI run after issue #17's
# merges (2026-12-02): unit and integration 89.2%, the whole suite 96.3%. The first half leaves out
# gateway/workers.py (#18): the supervisor of forked `serve` workers, which cannot run in a test process (it refuses
# to fork beside threads); the e2e half measures it, through coverage's fork patch.
COVERAGE := $(VENV)/bin/coverage
UNIT_FLOOR := 88
SUITE_FLOOR := 95

coverage: test-tools $(STAMP)
	$(COVERAGE) erase
	$(COVERAGE) run -m pytest $(XDIST) --ignore=tests/e2e $(PYTEST_ARGS)
	$(COVERAGE) combine -q
	$(COVERAGE) report --fail-under=$(UNIT_FLOOR) --omit=gateway/workers.py
	$(COVERAGE) run -m pytest $(XDIST) tests/e2e $(PYTEST_ARGS)
	$(COVERAGE) combine -q --append
	$(COVERAGE) report --fail-under=$(SUITE_FLOOR)

lint: $(STAMP)
	$(VENV)/bin/ruff check gateway tests bench
	$(VENV)/bin/ruff format --check gateway tests bench
	$(VENV)/bin/mypy --strict gateway

format: $(STAMP)
	$(VENV)/bin/ruff check --fix gateway tests bench
	$(VENV)/bin/ruff format gateway tests bench

bench: $(STAMP)
	$(PY) -m bench.run $(if $(QUICK),--quick)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.*
