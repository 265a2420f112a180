# swell: every target installs what it needs and is safe to run twice.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
# ansible-runner looks for ansible-playbook on PATH, and tests start promtool, haproxy...
export PATH := $(BIN):$(PATH)

# Debian packages used by the suite and the drill (real parts, started as child processes).
DEB_PACKAGES := python3-venv prometheus haproxy cloud-init debootstrap
PY_DIRS := $(wildcard swell stacks autoscaler loadtests)
STAMP := $(VENV)/.swell-installed

.PHONY: setup debs test lint typecheck unit preview bench bench-ansible clean

setup: debs $(STAMP)

debs:
	@scripts/ensure-debian-packages $(DEB_PACKAGES)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy $(PY_DIRS) tests

unit: setup
	$(BIN)/pytest tests

test: lint typecheck unit

# Real apply of site.yml to three Debian 12 chroots, timed per phase (needs root; see docs/ansible.md).
bench-ansible: setup
	$(BIN)/python scripts/bench-ansible

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
