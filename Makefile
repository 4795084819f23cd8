# Copyright 2026 The superneuron_ros Authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
#
# Development commands. Everything runs from the virtual environment that `make setup` builds;
# nothing needs a ROS 2 install, a GPU or a network other than PyPI.
#
#   make demo     set up if needed, then run `superneuron demo` (ARGS='...' passes options)
#   make test     set up if needed, then run every test (PYTEST_ARGS='-k name' narrows it)
#   make test ROS_DISTRO=jazzy    the same on the ROS 2 jazzy wheels (.venv-jazzy, build-jazzy)
#   make test-all     make test for kilted, then for jazzy (what CI runs)
#   make lint     flake8 (ament configuration), pep257 and copyright checks
#   make demo-model     retrain the embedded demo model; make demo-profiles recalibrates it
#   make setup    create or update .venv (idempotent; a no-op in seconds when nothing changed)
#   make clean    remove build outputs and caches (keeps .venv); `make distclean` removes .venv too

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
# The ROS 2 distribution of the wheel environment: kilted (.venv) or jazzy (.venv-jazzy).
ROS_DISTRO ?= kilted
ifeq ($(ROS_DISTRO),kilted)
VENV ?= $(ROOT)/.venv
BUILD_DIR ?= $(ROOT)/build
else
VENV ?= $(ROOT)/.venv-$(ROS_DISTRO)
BUILD_DIR ?= $(ROOT)/build-$(ROS_DISTRO)
endif
PKG := $(ROOT)/superneuron_ros
PYTHON := $(VENV)/bin/python
ARGS ?=
PYTEST_ARGS ?=
LINT_PATHS := superneuron_ros launch test setup.py

# Keep ROS traffic on this machine, on a domain of its own per run, and never call a model hub.
define RUN_ENV
export ROS_DISTRO=$(ROS_DISTRO) ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST; \
export ROS_DOMAIN_ID=$$(( RANDOM % 100 + 1 )); \
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1; \
export AMENT_PREFIX_PATH="$(VENV)$${AMENT_PREFIX_PATH:+:$$AMENT_PREFIX_PATH}"; \
export PATH="$(VENV)/bin:$$PATH"
endef

.PHONY: help setup demo test test-all lint clean distclean demo-model demo-profiles

help:
	@sed -n 's/^#   make /  make /p' $(firstword $(MAKEFILE_LIST))

setup:
	@ROS_DISTRO="$(ROS_DISTRO)" VENV="$(VENV)" BUILD_DIR="$(BUILD_DIR)" bash "$(ROOT)/tools/setup.sh"

demo: setup
	@$(RUN_ENV); cd "$(ROOT)" && superneuron demo $(ARGS)

# Rebuild the embedded demo's shipped artefacts: the model (85 minutes of training on this CPU; the
# shipped one had ARGS='--minutes 55'), then its profiles (about 7 minutes). `make demo` uses what
# is committed; these only reproduce it.
demo-model: setup
	@$(RUN_ENV); cd "$(ROOT)" && superneuron train-demo \
	    --out superneuron_ros/superneuron_ros/data/demo_model $(ARGS)

demo-profiles: setup
	@$(RUN_ENV); bash "$(ROOT)/tools/make_demo_profiles.sh"

# pytest's exit code 5 (no test collected) is a failure, like any other non-zero code.
test: setup
	@$(RUN_ENV); \
	echo "[test] ROS 2 $(ROS_DISTRO), ROS_DOMAIN_ID=$$ROS_DOMAIN_ID, ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST"; \
	cd "$(PKG)"; rc=0; "$(PYTHON)" -m pytest test -ra $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo '[test] error: pytest collected no test' >&2; fi; \
	exit $$rc

# Both distributions; fails when either fails (the second runs even when the first failed).
test-all:
	@rc=0; $(MAKE) --no-print-directory test ROS_DISTRO=kilted || rc=1; \
	$(MAKE) --no-print-directory test ROS_DISTRO=jazzy || rc=1; exit $$rc

lint: setup
	@cd "$(PKG)" && rc=0; \
	"$(PYTHON)" -m flake8 $(LINT_PATHS) || rc=1; \
	"$(PYTHON)" -m flake8 --config setup.cfg "$(ROOT)/tools" || rc=1; \
	"$(PYTHON)" -m pytest -q -p no:cacheprovider test/test_pep257.py test/test_copyright.py \
	    || rc=1; \
	exit $$rc

clean:
	rm -rf "$(BUILD_DIR)" "$(ROOT)/build" "$(ROOT)/build-jazzy" "$(ROOT)/install" "$(ROOT)/log" "$(PKG)"/*.egg-info \
	    "$(PKG)/.pytest_cache" "$(ROOT)/.pytest_cache"
	find "$(ROOT)" \( -path "$(VENV)" -o -path "$(ROOT)/.venv" -o -path "$(ROOT)/.venv-jazzy" \
	    -o -path "$(ROOT)/.git" \) -prune \
	    -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf "$(VENV)" "$(ROOT)/.venv" "$(ROOT)/.venv-jazzy"
