# penguinmails.vps — two commands on a fresh Debian machine, as root:
#   make demo   set everything up and run a whole tenant migration in the lab
#   make test   set everything up and run every test (lint, sanity, unit, integration, lab)
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
COLL_LINK := $(CURDIR)/collections/ansible_collections/penguinmails/vps
# ansible-test wants the tree under ansible_collections/<ns>/<name>: sanity runs on a copy.
# SANITY_DIR and SANITY_ARGS let a developer check a few files: make sanity SANITY_ARGS="--test pep8"
SANITY_DIR ?= /tmp/penguinmails-vps-sanity
SANITY_ROOT = $(SANITY_DIR)/ansible_collections/penguinmails/vps
SANITY_ARGS ?=
# make test runs whole test files on this many workers, each with its own lab (tests/lab: one network per lab).
PYTEST_WORKERS ?= 2
PYTEST_ARGS ?= -n $(PYTEST_WORKERS) --dist loadfile --durations=30
PYTEST_PATHS ?= tests/unit tests/integration
# make test runs the static checks (ansible-doc, lint, sanity, ee; all of them, --keep-going) in the background,
# niced, while pytest runs; their output goes to CHECKS_LOG and is printed when both are done.
# Every test's duration: tests/output/durations.tsv (per file: durations_by_file.tsv).
TEST_OUTPUT := $(CURDIR)/tests/output
CHECKS_LOG := $(TEST_OUTPUT)/checks.log
# The lab's Mailu host runs Debian's postfix, dovecot and rspamd itself, per lab host: their system services
# are never started (a policy-rc.d keeps the install from starting them).
DEB_PACKAGES := bind9 bind9-utils openssh-server openssh-client iproute2 rsync procps \
	postfix dovecot-core dovecot-imapd dovecot-lmtpd rspamd restic openssl
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PATH := $(BIN):$(PATH)

.PHONY: help setup venv debs collection doc checks lint sanity ee unit integration test demo bench clean

help:
	@echo "make demo   - set up and run a whole tenant migration in the lab"
	@echo "make test   - set up and run every test"
	@echo "make bench  - run the benchmarks against the peer collections"

setup: debs venv collection

debs:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  if [ ! -e /usr/sbin/policy-rc.d ]; then \
	    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; \
	    trap 'rm -f /usr/sbin/policy-rc.d' EXIT; \
	  fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python requirements.txt requirements-dev.txt
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

# Relinked only when wrong: ln -sfn removes the link before making it again, which a running test would see.
collection:
	@mkdir -p $(dir $(COLL_LINK))
	@[ "$$(readlink $(COLL_LINK))" = "../../.." ] || ln -sfn ../../.. $(COLL_LINK)

# Every plugin's documentation renders.
doc: setup
	$(BIN)/ansible-doc -t lookup penguinmails.vps.vault > /dev/null
	$(BIN)/ansible-doc -t callback penguinmails.vps.audit > /dev/null
	$(BIN)/ansible-doc -t module $$(ls plugins/modules | sed -n 's/\.py$$//p' | sed 's/^/penguinmails.vps./') > /dev/null

# The static checks of make test, one after the other.
checks: doc lint sanity ee

lint: setup
	$(BIN)/ansible-lint --profile production
	$(BIN)/antsibull-changelog lint

GET_PIP_CACHE := $(HOME)/.ansible/test/cache/get_pip_24_2.py

sanity: setup
	@mkdir -p $(dir $(GET_PIP_CACHE)); cmp -s .ci/get_pip_offline.py $(GET_PIP_CACHE) || cp .ci/get_pip_offline.py $(GET_PIP_CACHE)
	rm -rf $(SANITY_ROOT) && mkdir -p $(SANITY_ROOT)
	git ls-files -co --exclude-standard -z | rsync -a --from0 --files-from=- ./ $(SANITY_ROOT)/
	cd $(SANITY_ROOT) && git init -q && git add -A
	cd $(SANITY_ROOT) && $(BIN)/ansible-test sanity --venv --python 3.11 --color no $(SANITY_ARGS)

# The AWX/AAP execution environment definition must produce a build context.
ee: setup
	rm -rf $(SANITY_DIR)/ee-context
	$(BIN)/ansible-builder create -f docs/awx/execution-environment.yml -c $(SANITY_DIR)/ee-context --output-filename Containerfile > /dev/null
	test -s $(SANITY_DIR)/ee-context/Containerfile

unit: setup
	$(BIN)/pytest -q tests/unit

integration: setup
	$(BIN)/pytest $(PYTEST_ARGS) tests/integration

# The static checks (make checks) run in the background while pytest runs; both always run to the end, the
# checks' whole output is printed after pytest's, and make test fails if either failed.
test: setup
	@mkdir -p $(TEST_OUTPUT)
	@echo "make checks (ansible-doc, lint, sanity, ee) runs in the background, niced; its output: $(CHECKS_LOG)"
	@nice -n 10 $(MAKE) --no-print-directory --keep-going checks > $(CHECKS_LOG) 2>&1 & checks_pid=$$!; \
	pytest_status=0; $(BIN)/pytest $(PYTEST_ARGS) $(PYTEST_PATHS) || pytest_status=$$?; \
	if kill -0 $$checks_pid 2>/dev/null; then echo "pytest done (exit $$pytest_status); waiting for make checks"; fi; \
	checks_status=0; wait $$checks_pid || checks_status=$$?; \
	echo "======== make checks (ansible-doc, lint, sanity, ee): $(CHECKS_LOG) ========"; \
	cat $(CHECKS_LOG); \
	echo "======== make checks: exit $$checks_status; pytest: exit $$pytest_status ========"; \
	[ $$checks_status -eq 0 ] && [ $$pytest_status -eq 0 ]

demo: setup
	$(BIN)/python tests/lab/demo.py

bench: setup
	$(BIN)/python bench/lookup.py
	$(BIN)/python bench/keypair.py
	$(BIN)/python bench/authorized_keys.py
	$(BIN)/python bench/rotate_all.py
	$(BIN)/python bench/rotate_all_scale.py
	$(BIN)/python bench/host_step_cost.py
	$(BIN)/python bench/fanout.py
	$(BIN)/python bench/mail_copy.py

clean:
	rm -rf $(CURDIR)/.build $(CURDIR)/collections tests/output
