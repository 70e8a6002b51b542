# The project's commands. Each sets up what it needs: a virtualenv in .venv with the
# project and its test tools; the integration tests start a real Kafka and Redis themselves.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup test test-fast demo bench bench-replay schemas clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

## The whole test suite: types, the checked-in JSON Schemas, then every test tier.
test: $(STAMP)
	$(BIN)/mypy
	$(BIN)/python -m schemas.jsonschema --check
	$(BIN)/python -m pytest -q -p no:cacheprovider

## Only the pure core (no services): seconds.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit tests/property

## Offline: a sample broker day through `rewards replay`.
demo: $(STAMP)
	$(BIN)/python -m benchmarks.replay_throughput --events 250000 --keep artifacts/demo

bench: bench-replay

## Replay throughput on one core over 1,000,000 generated events.
bench-replay: $(STAMP)
	$(BIN)/python -m benchmarks.replay_throughput --events 1000000

## Regenerate schemas/json/ from the models.
schemas: $(STAMP)
	$(BIN)/python -m schemas.jsonschema

clean:
	rm -rf $(VENV) artifacts .pytest_cache .mypy_cache .hypothesis
