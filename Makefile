# hapx task runner. `make help` lists the targets.
SHELL := /bin/bash
STACK ?= dev
OUT ?= out/$(STACK)
PYTHON := .venv/bin/python

.PHONY: help setup test test-unit test-rendered render clean

help:
	@echo "make setup                 install the tools the tests use and the Python venv (.venv)"
	@echo "make test                  run the test suite (unit + rendered-config tests with the real tools)"
	@echo "make render STACK=dev OUT=dir   write every generated file for a stack, creating nothing"
	@echo "make clean                 remove render output and caches in the work tree"

setup:
	bash scripts/setup.sh

test:
	$(PYTHON) -m pytest -q tests

test-unit:
	$(PYTHON) -m pytest -q tests/unit

test-rendered:
	$(PYTHON) -m pytest -q tests/rendered

render:
	$(PYTHON) -m tools.render --stack $(STACK) --out $(OUT)

clean:
	rm -rf out .pytest_cache
