# MDUS PostgreSQL platform: lab, tests, benchmarks. `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
VENV := $(CURDIR)/.venv
export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export MDUS_LAB_IMAGE ?= mdus/debian12-systemd:latest
SCENARIOS ?= default cluster lab dr
# Mitogen runs the same plays ~2.7x faster on the lab (one persistent interpreter per
# host instead of a docker exec and a Python start per task). MITOGEN=0: Ansible's own
# linear strategy. The default scenario's drift run (a real site.yml run) always uses
# Ansible's own strategy, so both paths stay tested.
MITOGEN ?= 1
ifeq ($(MITOGEN),1)
export ANSIBLE_STRATEGY := mitogen_linear
endif
PY_DIRS := roles tests bench schema scripts molecule files plugins

.PHONY: help venv docker image lab lab-destroy lint syntax unit molecule test bench-provision

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements-dev.txt
	@echo "[venv] creating $(VENV) with pinned controller dependencies"
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed  ## Create the virtualenv with pinned Python deps

docker:  ## Install and start a Docker engine if none answers
	bash scripts/ensure-docker.sh

image: docker  ## Make sure the Debian 12 systemd image exists (builds it locally)
	bash scripts/build-image.sh

lab: venv image  ## Bring up the lab and converge site.yml on it
	@echo "[lab] creating containers"
	ansible-playbook -i inventories/lab playbooks/lab/create.yml
	@echo "[lab] converging site.yml"
	ansible-playbook -i inventories/lab site.yml
	ansible-playbook -i inventories/lab playbooks/lab/info.yml

lab-destroy: venv  ## Remove the lab containers and network
	ansible-playbook -i inventories/lab playbooks/lab/destroy.yml

lint: venv  ## yamllint, ansible-lint (production profile), ruff
	@echo "[lint] yamllint"; yamllint --strict .
	@echo "[lint] ansible-lint"; ansible-lint --profile production --strict
	@echo "[lint] ruff"; ruff check $(PY_DIRS); ruff format --check $(PY_DIRS)

syntax: venv  ## ansible-playbook --syntax-check on every playbook (one run for all)
	@echo "[syntax] site.yml playbooks/*.yml playbooks/lab/*.yml"
	ansible-playbook -i inventories/lab --syntax-check site.yml playbooks/*.yml playbooks/lab/*.yml >/dev/null

unit: venv  ## Python unit tests (tuning rules, schema and runner on a throw-away PostgreSQL)
	pytest -q -n auto tests/unit $$( [ -d tests/schema ] && echo tests/schema )

molecule: venv image  ## All molecule scenarios (SCENARIOS="default cluster" to choose)
	@for s in $(SCENARIOS); do echo "[molecule] scenario $$s"; t=$$(date +%s); \
	  molecule test -s $$s; echo "[molecule] scenario $$s took $$(( $$(date +%s) - t )) s"; done

test: lint syntax unit molecule  ## Every check: lint, syntax, unit, molecule

bench-provision: venv image  ## Time a fresh converge and a re-run of the lab
	bash bench/provision
