# Every target creates the virtual environment it needs (./.venv) on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo quickstart kafka-example test lint format bench bench-all bench-kafka venv clean \
	chromium test-monitoring web-view-screenshot bench-monitoring

$(STAMP): pyproject.toml connectors/kafka/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]' -e connectors/kafka
	touch $@

venv: $(STAMP)

demo: $(STAMP)  ## run the main example (long ride alerts on generated taxi rides)
	$(BIN)/python -m examples.long_ride_alerts

quickstart: $(STAMP)
	$(BIN)/python examples/quickstart.py

LINTED := flowactors connectors/kafka/flowactors_kafka tests examples benchmarks scripts

lint: $(STAMP)  ## ruff (check + format check), mypy --strict, and the one-way import layers
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/lint-imports
	$(BIN)/mypy
	cd connectors/kafka && ../../$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format $(LINTED)
	$(BIN)/ruff check --fix $(LINTED)

test: lint chromium  ## lint, then the whole test suite (tests/kafka starts a Kafka broker itself)
	$(BIN)/pytest flowactors tests

# The web view is tested in a real headless Chromium: Debian's package, installed when missing.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
		{ $(SUDO) apt-get update && $(SUDO) apt-get install -y chromium; }

test-monitoring: $(STAMP) chromium  ## the monitoring and CLI tests only
	$(BIN)/pytest -q tests/monitoring tests/cli

web-view-screenshot: $(STAMP) chromium  ## refresh docs/web-view.png from a running job
	FLOWACTORS_SCREENSHOT=docs/web-view.png $(BIN)/pytest -q tests/monitoring/test_web_view.py

bench: $(STAMP)  ## the throughput runner (prints a table, writes benchmarks/results.json)
	$(BIN)/python -m benchmarks.run

bench-all: bench  ## plus checkpoint costs and long ride alerts (benchmarks/*.json)
	$(BIN)/python -m benchmarks.checkpoints
	$(BIN)/python -m benchmarks.long_rides

kafka-example: $(STAMP)  ## long ride alerts from a Kafka topic to another, exactly once (starts a broker)
	$(BIN)/python -m examples.kafka_long_ride_alerts

bench-monitoring: $(STAMP)  ## throughput with and without a scraped monitoring server
	$(BIN)/python -m benchmarks.monitoring_cost --events 10000000 --interval 1.0

bench-kafka: $(STAMP)  ## Kafka connector against raw aiokafka (starts a broker)
	$(BIN)/python -m benchmarks.kafka_bench

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

# A single-node Kafka broker (KRaft, loopback) for the Kafka connector's tests: scripts/kafka.sh.
# `make kafka-start KAFKA_ARGS="--sasl --tls"` adds the SASL_PLAINTEXT and SSL listeners.
KAFKA_ARGS ?=
.PHONY: kafka-fetch kafka-start kafka-stop

kafka-fetch:  ## download the broker jars from Maven Central once (~/.cache/flowactors/kafka-<version>)
	scripts/kafka.sh fetch

kafka-start:  ## start the broker in .kafka/ and print its bootstrap address
	scripts/kafka.sh start $(KAFKA_ARGS)

kafka-stop:
	scripts/kafka.sh stop
