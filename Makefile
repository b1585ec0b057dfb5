# Website Activity: `make all` runs the whole pipeline; `make test` runs the test suite.
# Variables (override on the command line: make all EVENTS=50000 SEED=1; make train FORCE=1):
EVENTS  ?=
SEED    ?=
PROFILE ?= local
PORT    ?=
FORCE   ?=
DURATION ?=
RATE    ?=
START   ?=
BENCH_EVENTS ?= 1000000
QUICK   ?=
TEST_WORKERS ?= 2
# VERBOSE=1: every library line (Spark, log4j, MLflow, GX, progress bars) on the terminal too,
# instead of only in logs/<stage>.log.
VERBOSE ?=

PY      := .venv/bin/python
export WA_ROOT := $(CURDIR)
# Options every stage shares; empty variables fall back to the configuration in conf/.
COMMON  := --profile $(PROFILE) $(if $(PORT),--port $(PORT))
export PROFILE
ifneq ($(strip $(VERBOSE)),)
export WA_VERBOSE := $(VERBOSE)
endif

.DEFAULT_GOAL := help
.PHONY: help setup env kafka-up kafka-down kafka-status reset topics produce ingest stream validate train \
        score report compact all bench mlflow-ui test test-fast clean cluster-up cluster-down cluster-status \
        live

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-13s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  variables: EVENTS SEED PROFILE PORT FORCE DURATION RATE START BENCH_EVENTS QUICK TEST_WORKERS VERBOSE (see README.md)"

setup: ## create .venv with the pinned packages, fetch the JVM jars, write the JVM's class archive (idempotent)
	@bash scripts/setup.sh
	@if ! ls .jvm/cds/*.jsa >/dev/null 2>&1; then $(PY) scripts/class_archive.py $(COMMON); fi

# What the stages depend on: setup, silent when everything is up to date.
env:
	@SETUP_QUIET=1 bash scripts/setup.sh

kafka-up: env ## start the embedded Kafka broker (KRaft) and wait until it answers
	@$(PY) scripts/broker.py $(COMMON) up

kafka-down: ## stop the embedded broker started by kafka-up (by its pid)
	@if [ -x $(PY) ]; then $(PY) scripts/broker.py $(COMMON) down; else echo "broker: nothing to stop (no .venv)"; fi

kafka-status: env ## say whether the embedded broker is up
	@$(PY) scripts/broker.py $(COMMON) status

cluster-up: env ## the local cluster harness: 3 Kafka brokers (KRaft) + Spark master and 2 workers (then PROFILE=cluster)
	@$(PY) scripts/cluster.py $(COMMON) up

cluster-down: ## stop the local cluster harness (by pid)
	@if [ -x $(PY) ]; then $(PY) scripts/cluster.py $(COMMON) down; else echo "cluster: nothing to stop (no .venv)"; fi

cluster-status: env ## say whether the local cluster harness is up
	@$(PY) scripts/cluster.py $(COMMON) status

reset: env ## delete the topics, data layers and checkpoints for a fresh run (MLflow runs are kept)
	@$(PY) scripts/topics.py $(COMMON) --delete
	@$(PY) scripts/reset.py $(COMMON)

topics: env ## create the topics producer-a and producer-b (idempotent)
	@$(PY) scripts/topics.py $(COMMON)

produce: env ## run the two producers in parallel (EVENTS valid events + faults, or DURATION s; RATE records/s; START)
	@$(PY) scripts/produce.py $(COMMON) $(if $(EVENTS),--events $(EVENTS)) $(if $(SEED),--seed $(SEED)) $(if $(DURATION),--duration $(DURATION)) $(if $(RATE),--rate $(RATE)) $(if $(START),--start $(START))

ingest: env ## Structured Streaming, both topics -> bronze, silver, quarantine, gold (availableNow, checkpointed)
	@$(PY) scripts/ingest.py $(COMMON)

stream: env ## the same job with a processing-time trigger, until Ctrl-C/SIGTERM or DURATION seconds
	@$(PY) scripts/ingest.py $(COMMON) --stream $(if $(DURATION),--duration $(DURATION))

live: kafka-up topics ## the pipeline live: producers at RATE (default 1000/s, wall-clock times), stream, view on 127.0.0.1:8765, until Ctrl-C or DURATION
	@$(PY) scripts/live.py $(COMMON) $(if $(RATE),--rate $(RATE)) $(if $(DURATION),--duration $(DURATION)) $(if $(SEED),--seed $(SEED))

validate: env ## Great Expectations suites on the lake -> reports/data_docs, reports/data_quality.csv; non-zero exit on failure
	@$(PY) scripts/validate.py $(COMMON)

train: env ## session features -> tuned logistic regression, tracked and registered in MLflow (needs a passed validate; FORCE=1 overrides)
	@$(PY) scripts/train.py $(COMMON) $(if $(FORCE),--force)

score: env ## the MLflow champion scores every session -> data/predictions, reports/predictions.csv
	@$(PY) scripts/score.py $(COMMON)

report: env ## CSV reports (Power BI ready) and the offline dashboard reports/index.html
	@$(PY) scripts/report.py $(COMMON)

compact: env ## OPTIMIZE + VACUUM the lake's Delta tables (small files from make stream -> large ones)
	@$(PY) scripts/compact.py $(COMMON)

all: setup ## the whole pipeline from scratch (broker, reset, topics, produce, ingest, validate, train, score, report), then a summary table
	@$(PY) scripts/all.py $(COMMON) $(if $(FORCE),--force)

bench: env ## the stages beside their baselines on a broker and lake of its own -> reports/bench.json, bench.csv (BENCH_EVENTS; QUICK=1: 100k)
	@$(PY) scripts/bench.py $(COMMON) --events $(BENCH_EVENTS) $(if $(QUICK),--quick)

mlflow-ui: env ## the MLflow UI on http://127.0.0.1:5000 (mlflow.ui_port) over mlflow.db and mlruns/
	@$(PY) scripts/mlflow_ui.py $(COMMON)

# Two pytest worker processes pay on 2 cores: much of a test's time is a JVM starting or a broker
# answering. --dist loadfile keeps each file on one worker, so a module's fixtures (its broker,
# its lake, the cluster harness) are built once; files go out in collection order (the longest,
# cluster/ and e2e/, first) instead of xdist's most-tests-first. TEST_WORKERS=1: one process.
PYTEST_WORKERS := $(if $(filter-out 0 1,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder)
# The quick loop: the unit tests and the integration tests that take seconds each, not minutes.
FAST_TESTS := tests/unit tests/integration/test_bad_input.py tests/integration/test_pipeline.py \
              tests/integration/test_produce.py tests/reliability/test_operator_input.py

test: env ## the test suite (unit, integration with a real broker and Spark, end to end; TEST_WORKERS=2)
	$(PY) -m pytest tests $(PYTEST_WORKERS) --durations=25

test-fast: env ## the quick loop: unit tests and the fastest integration tests (aim: under 3 minutes)
	$(PY) -m pytest $(FAST_TESTS) $(PYTEST_WORKERS) --durations=10

clean: kafka-down cluster-down ## remove generated data, reports, MLflow runs and the embedded broker's storage
	@if [ -x $(PY) ]; then $(PY) scripts/broker.py --profile secure down; fi
	rm -rf data/bronze data/silver data/quarantine data/gold data/ground_truth data/checkpoints data/_validation data/_runs data/features data/predictions reports/*.csv reports/index.html models/metrics.json \
	       reports/data_docs gx/uncommitted mlflow.db mlruns .kafka .kafka-secure .cluster models/*/ logs
