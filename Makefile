# hapx task runner. `make help` lists the targets.
SHELL := /bin/bash
STACK ?= dev
OUT ?= out/$(STACK)
PYTHON := .venv/bin/python
PULUMI := scripts/pulumi.sh

.PHONY: help setup engine image lab up preview destroy ssh-key bench test test-unit test-rendered test-image test-engine test-e2e render config-docs clean

help:
	@echo "make lab                   from nothing: set-up, engine, base image, then 'pulumi up' of the QEMU lab stack"
	@echo "make test                  set-up, base image, then every test (unit, rendered, engine, end-to-end lab)"
	@echo "make setup                 system packages, Python venv (.venv) and the Pulumi engine (engine/build.sh)"
	@echo "make image                 build the Debian base image: base.qcow2 (QEMU) and base.vdi (VirtualBox), cached by its inputs"
	@echo "make preview STACK=dev     pulumi preview of a stack (local file backend in .state/)"
	@echo "make up STACK=lab          pulumi up of a stack"
	@echo "make destroy STACK=lab     pulumi destroy of a stack"
	@echo "make ssh-key STACK=lab     write the stack's admin key and the nodes' host keys to ~/.ssh/hapx-STACK{,.known_hosts}"
	@echo "make bench [BENCH_ARGS=...] [BENCH_OUT=.bench/failover.json]  failover benchmark on the lab: prints every run, writes the JSON and a PNG per scenario beside it"
	@echo "make render STACK=dev OUT=dir   write every generated file for a stack, creating nothing"
	@echo "make config-docs           rewrite docs/configuration.md's key tables from the config models"
	@echo "make clean                 remove render output and caches in the work tree"

setup:
	bash scripts/setup.sh

engine:
	bash engine/build.sh

image: setup
	bash image/build.sh

lab: image
	$(MAKE) up STACK=lab
	$(MAKE) ssh-key STACK=lab
	@bash scripts/lab-info.sh lab

stack-$(STACK):
	@$(PULUMI) stack select --create $(STACK) >/dev/null

preview: stack-$(STACK)
	$(PULUMI) preview --stack $(STACK) --diff

up: stack-$(STACK)
	$(PULUMI) up --stack $(STACK) --yes --skip-preview

destroy:
	$(PULUMI) destroy --stack $(STACK) --yes --skip-preview

ssh-key:
	@mkdir -p ~/.ssh && umask 077 && $(PULUMI) stack output --stack $(STACK) --show-secrets adminPrivateKey > ~/.ssh/hapx-$(STACK)
	@$(PULUMI) stack output --stack $(STACK) knownHosts > ~/.ssh/hapx-$(STACK).known_hosts
	@echo "wrote ~/.ssh/hapx-$(STACK) and ~/.ssh/hapx-$(STACK).known_hosts (the nodes' pinned host keys)"

BENCH_ARGS ?= --runs 5
# To publish a run: BENCH_OUT=docs/bench/failover.json (the pictures land beside it).
BENCH_OUT ?= .bench/failover.json
bench: image
	$(PYTHON) -m bench.failover $(BENCH_ARGS) --out $(BENCH_OUT)
	$(PYTHON) -m bench.plot $(BENCH_OUT) --out $(dir $(BENCH_OUT))

# -v and unbuffered: a long run (the e2e tests boot VMs) shows each test as it ends.
test: image
	PYTHONUNBUFFERED=1 $(PYTHON) -m pytest -v --durations=15 tests

test-unit:
	$(PYTHON) -m pytest -q tests/unit

test-rendered:
	$(PYTHON) -m pytest -q tests/rendered

test-image:
	$(PYTHON) -m pytest -q tests/image

test-engine:
	$(PYTHON) -m pytest -q tests/engine

test-e2e:
	$(PYTHON) -m pytest -q tests/e2e

render:
	$(PYTHON) -m tools.render --stack $(STACK) --out $(OUT)

config-docs:
	$(PYTHON) -m tools.config_docs

clean:
	rm -rf out .pytest_cache
