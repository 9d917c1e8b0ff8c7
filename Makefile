# Kanaria — `make demo` runs the local stack end to end, `make test` runs every test.
# Both do all set-up on a fresh machine: Debian packages, a virtualenv, the control-plane binaries.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_WORKERS ?= 2
export PYTHONPATH := $(CURDIR)/operator:$(CURDIR)

.PHONY: help deps system-deps venv cluster-bin helm-bin kindcheck-bin crds check-crds test test-unit test-e2e \
        test-fast lint image image-modelserver demo demo-llm bench bench-stats bench-detection bench-monitor bench-feedback bench-scale bench-floor kind-up cluster-up clean

help:
	@echo "make demo        the local stack: a rollout promoted, a bad one rolled back"
	@echo "make demo-llm    an LLM rollout: healthy promoted, slower first token rolled back"
	@echo "make test        every test (sets up everything first)"
	@echo "make test-unit   fast tests: no cluster, no Prometheus"
	@echo "make test-e2e    only the tests on the real stack"
	@echo "make lint        ruff and mypy"
	@echo "make crds        regenerate crds/ from the API models"
	@echo "make cluster-bin build the pinned control-plane binaries (cached)"
	@echo "make helm-bin    build the pinned helm (cached), for the chart in charts/kanaria"
	@echo "make kindcheck-bin build the checker of kind-config.yaml against the pinned kind (cached)"
	@echo "make cluster-up  a local control plane for development (Ctrl-C stops it)"
	@echo "make bench-stats the statistics benchmark"
	@echo "make bench-feedback the user-feedback (thumbs) benchmark"
	@echo "make bench-monitor false alarms and detection delay of the serving-revision detectors"
	@echo "make bench-scale cost against the number of ModelDeployments on the test bed (N=100,1000; BENCH_ARGS)"
	@echo "make bench-floor the least time any operator could take to weigh N canaries at once on this bed"
	@echo "make image       the operator image as an OCI archive, without Docker (cached by inputs)"
	@echo "make image-modelserver the reference model server's image, the same way"
	@echo "make kind-up     a kind cluster (needs Docker and kind)"

system-deps:
	@bash hack/install-system-deps.sh

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@echo "installing Python dependencies into $(VENV) ..."
	@$(PY) -m pip install -q -e '.[dev]'
	@touch $@

venv: $(VENV)/.installed

cluster-bin: system-deps
	@bash hack/localcluster/build.sh >/dev/null

# helm for the chart's tests (charts/kanaria), built from the Go module proxy like the control plane.
helm-bin: system-deps
	@bash hack/localcluster/build-helm.sh >/dev/null

# kindcheck: kind-config.yaml checked with the pinned kind's own config loading and validation
# (tests/unit/test_kind_config.py); kind's module is fetched from the Go module proxy.
kindcheck-bin: system-deps
	@bash hack/localcluster/build-kindcheck.sh >/dev/null

# The operator image as an OCI archive (mmdebstrap + umoci, no Docker), under .cache/images/,
# keyed by a hash of its inputs: a warm build is a lookup. Prints path, size and time.
image: system-deps
	@bash hack/build-image.sh operator

image-modelserver: system-deps
	@bash hack/build-image.sh modelserver

deps: system-deps venv cluster-bin helm-bin kindcheck-bin

crds: venv
	@$(PY) -m kanaria.api.crd > crds/modeldeployment.yaml
	@echo "wrote crds/modeldeployment.yaml"
	@bash hack/sync-chart.sh

test: deps
	@$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

test-unit: venv
	@$(PY) -m pytest tests/unit -q $(PYTEST_ARGS)

test-e2e: deps
	@$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadgroup tests/e2e tests/testbed $(PYTEST_ARGS)

lint: venv
	@$(VENV)/bin/ruff check operator tests hack
	@$(VENV)/bin/mypy

demo: deps
	@$(PY) -m kanaria.sandbox.demo $(DEMO_ARGS)

demo-llm: deps
	@$(PY) -m kanaria.sandbox.demo_llm $(DEMO_ARGS)

bench-stats: venv
	@$(PY) hack/bench_stats.py $(BENCH_ARGS)

bench-monitor: venv
	@$(PY) hack/bench_monitoring.py $(BENCH_ARGS)

bench-feedback: venv
	@$(PY) hack/bench_feedback.py $(BENCH_ARGS)

bench-scale: deps
	@$(PY) hack/bench_scale.py $(BENCH_ARGS)

bench-floor: deps
	@$(PY) hack/bench_floor.py $(BENCH_ARGS)

bench: bench-stats bench-detection bench-monitor bench-feedback

cluster-up: deps
	@$(PY) -m kanaria.sandbox.cluster up

kind-up:
	@bash hack/kind-up.sh

clean:
	rm -rf $(VENV) artifacts .pytest_cache .mypy_cache .ruff_cache

bench-detection: deps
	@$(PY) hack/bench_detection.py $(BENCH_ARGS)
