# swell: every target installs what it needs and is safe to run twice.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
# ansible-runner looks for ansible-playbook on PATH, and tests start promtool, haproxy...
export PATH := $(BIN):$(PATH)

# Debian packages used by the suite and the drill (real parts, started as child processes).
DEB_PACKAGES := python3-venv prometheus haproxy cloud-init debootstrap redis-server nginx
PY_DIRS := $(wildcard swell stacks autoscaler loadtests dashboards)
STAMP := $(VENV)/.swell-installed

.PHONY: lock setup debs test lint typecheck unit preview drill bench bench-stacks bench-sim bench-k8s bench-autoscaler bench-actuation bench-ansible bench-drill clean dashboards

setup: debs $(STAMP)

debs:
	@scripts/ensure-debian-packages $(DEB_PACKAGES)

# requirements.lock pins every package at the version the suite last passed with; a dependency new in
# pyproject.toml and not yet locked resolves freely until `make lock`.
$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --constraint requirements.lock -e '.[dev]'
	@touch $@

# Re-resolve every dependency of `[dev]` (all extras and the test tools) in a fresh venv and pin it.
lock:
	rm -rf build/lock-venv
	$(PYTHON) -m venv build/lock-venv
	build/lock-venv/bin/python -m pip install --quiet '.[dev]'
	{ echo "# Every package of swell[dev] at the version the suite passed with. Regenerate: make lock"; \
	  build/lock-venv/bin/python -m pip freeze --exclude-editable | grep -v '^swell[ @=]'; } > requirements.lock
	rm -rf build/lock-venv

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy $(PY_DIRS) tests

# tests/stacks runs in a pytest process of its own: Pulumi's mocks hang in a process that imported
# locust (gevent monkey-patching), and its conftest fails loudly if that ever happens. tests/loadtests
# imports locust (the shapes), so it gets a process of its own too.
unit: setup
	$(BIN)/pytest tests --ignore=tests/stacks --ignore=tests/loadtests
	$(BIN)/pytest tests/stacks
	$(BIN)/pytest tests/loadtests

# The main job: a 400% surge rehearsed on this machine with the real loop (report in build/drill/).
drill: setup
	$(BIN)/swell drill --profile surge400 --out build/drill

# The same surge with and without the autoscaler: duration, peak instances, p95, errors, CPU busy.
bench-drill: setup
	$(BIN)/python -m loadtests.bench --out build/drill-bench

# What the dev stack would create: resources per tier, vCPU/RAM against quota, cost (offline).
preview: setup
	$(BIN)/swell preview --stack dev

# Time the stack program under mocks at 10, 100 and 1000 instances (figures, JSON and PNG in build/).
bench-stacks: setup
	$(BIN)/python -m stacks.bench

test: lint typecheck unit

# The elasticity benchmark set and the simulator speed run (docs/BENCHMARKS.md); a few minutes.
bench-sim: setup
	$(BIN)/python -m autoscaler.sim.bench --out docs/BENCHMARKS.md

# Real apply of site.yml to three Debian 12 chroots, timed per phase (needs root; see docs/ansible.md).
bench-ansible: setup
	$(BIN)/python scripts/bench-ansible

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Regenerate the Prometheus rule file and the Grafana dashboard from dashboards/mixin.py.
dashboards: setup
	$(BIN)/python -m dashboards

# Kubernetes adapters: client cost of one pass over 100 tiers against the stand-in API server.
bench-k8s: setup
	$(BIN)/python tests/autoscaler/k8s/bench_k8s.py --tiers 100 --passes 20

# One autoscaler pass over 100 tiers against a real Prometheus: target 200 ms.
bench-autoscaler: setup
	$(BIN)/python tests/autoscaler/bench_pass.py --tiers 100 --passes 30

# One pass over 3 tiers while a stand-in `pulumi up` takes 120 s: the pass stays within one interval.
bench-actuation: setup
	$(BIN)/python tests/autoscaler/bench_actuation.py --up-delay 120 --interval 15

# Every benchmark, each printing its figures and ratios to its target (figures are noisy on 2 shared cores).
bench: bench-stacks bench-sim bench-k8s bench-autoscaler bench-actuation bench-ansible bench-drill
