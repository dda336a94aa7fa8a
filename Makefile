# `make demo` and `make test` do all of their own set-up on a fresh machine:
# Debian packages (when root), a virtual environment, and an editable install.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SYSTEM_STAMP := $(VENV)/.system-packages
# As an ordinary user, run the tests and Jupyter inside the lab's private user namespace, so live
# tests and live notebooks run instead of skipping (as root, or where user namespaces are refused,
# the command runs as it is, and the live tests skip with the reason).
ROOTLESS = $$(if [ "$$(id -u)" -ne 0 ] && $(BIN)/lab rootless true 2>/dev/null; then echo "$(BIN)/lab rootless"; fi)

.PHONY: demo test lint typecheck unit bench notebooks clean-venv system-packages venv

demo: $(STAMP)
	$(BIN)/lab demo --live

test: $(STAMP) $(SYSTEM_STAMP)
	$(BIN)/ruff check lab tests bench
	$(BIN)/ruff format --check lab tests bench
	$(BIN)/mypy
	$(ROOTLESS) $(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check lab tests bench
	$(BIN)/ruff format --check lab tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(ROOTLESS) $(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python -m bench

# JupyterLab is large and only needed to edit notebooks (tests run them with nbclient): on demand.
notebooks: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[jupyter]'
	$(ROOTLESS) $(BIN)/jupyter lab notebooks/

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,notebook]'
	touch $@

# Debian packages the tests use; installed only when we are root, skipped (with a note) otherwise.
# The stamp is written only as root: as a user the step (and its note) comes back on every run.
$(SYSTEM_STAMP): .ci/system-packages $(STAMP)
	.ci/system-packages
	if [ "$$(id -u)" -eq 0 ]; then touch $@; fi

system-packages:
	.ci/system-packages

clean-venv:
	rm -rf $(VENV)
