# The project's commands. Each sets up what it needs: a virtualenv in .venv with the
# project and its test tools; the integration tests start a real Kafka and Redis themselves.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)

.PHONY: setup lock image test test-fast test-faults test-cluster demo demo-offline bench bench-replay bench-replay-growth bench-worker bench-soak bench-whatif schemas clean

## The exact versions (with hashes) of requirements-dev.lock, then the project itself.
$(STAMP): pyproject.toml requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r requirements-dev.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

## The engine compiled with mypyc (handlers/, and the field checks and codec of schemas/) into .build/compiled,
## rebuilt when one of its sources changes; without a C compiler it says so and the source runs
## (same outputs, slower). REWARDS_PURE_PYTHON=1 runs the source anyway.
COMPILED := .build/compiled/manifest.json
$(COMPILED): $(STAMP) $(wildcard handlers/*.py) schemas/fields.py schemas/timefmt.py schemas/checks.py schemas/codec.py schemas/compiled.py
	$(BIN)/python -m streams.devtools.compile

setup: $(STAMP) $(COMPILED)

## Pin every dependency with its hashes from pyproject.toml (pip-tools): requirements.lock for the
## image, requirements-dev.lock (with the test tools) for `make setup` and CI. Run it after changing
## a dependency, then `make test`, and commit both files.
lock:
	$(PYTHON) -m venv .cache/lock-venv
	.cache/lock-venv/bin/pip install --quiet pip-tools
	.cache/lock-venv/bin/pip-compile --quiet --strip-extras --generate-hashes --allow-unsafe -o requirements.lock pyproject.toml
	.cache/lock-venv/bin/pip-compile --quiet --strip-extras --generate-hashes --allow-unsafe --extra dev -o requirements-dev.lock pyproject.toml

## The worker image, tagged with the project's version (deploy/k8s and docker-compose.yml use that tag).
image:
	docker build -f deploy/Dockerfile -t rewards:$(VERSION) .

## The test suite: types, the checked-in JSON Schemas, then the unit, property, integration
## (real Kafka, Redis and, for the status page, Chromium) and fault (SIGKILL, rebalance) tiers, on
## the compiled engine (required unless its build found no C compiler); the cluster tier (three
## brokers, killed and restarted); then the unit and property tiers again on the Python source.
test: $(STAMP) $(COMPILED)
	$(BIN)/mypy
	$(BIN)/python -m schemas.jsonschema --check
	REWARDS_REQUIRE_COMPILED=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests/unit tests/property tests/integration tests/faults
	$(MAKE) --no-print-directory test-cluster
	REWARDS_PURE_PYTHON=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests/unit tests/property

## Only the cluster tier: a three-node KRaft cluster of its own; a node killed (the one leading
## most partitions, the transaction coordinator, the group coordinator) or every node restarted
## in turn under two workers, each compared with the ts-order replay. Prints each scenario's
## figures (.cache/cluster-faults.jsonl).
test-cluster: $(STAMP) $(COMPILED)
	rm -f .cache/cluster-faults.jsonl
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/cluster
	cat .cache/cluster-faults.jsonl

## Only the fault tier: SIGKILL mid-run and rebalance, 30k-100k events each.
test-faults: $(STAMP) $(COMPILED)
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/faults

## Only the pure core (no services): seconds.
test-fast: $(STAMP) $(COMPILED)
	$(BIN)/python -m pytest -q tests/unit tests/property

## A generated broker day (200,000 fills) through the worker, on a local Kafka and Redis
## it starts itself; prints the day's summary and the group's lag after it.
demo: $(STAMP) $(COMPILED)
	$(BIN)/rewards demo

## The same kind of day offline, through `rewards replay` (no Kafka): seconds. The day and the
## outputs stay in .cache/demo-offline/.
demo-offline: $(STAMP) $(COMPILED)
	mkdir -p .cache/demo-offline
	$(BIN)/rewards sample-day .cache/demo-offline/day.jsonl
	$(BIN)/rewards replay --input .cache/demo-offline/day.jsonl --output .cache/demo-offline/outputs.jsonl

bench: bench-replay bench-worker

## The worker end to end against a raw aiokafka passthrough, a naive Faust agent and a Quix Streams app
## running the same engine (its virtualenv made once, from benchmarks/requirements-quix.txt), one broker.
bench-worker: $(STAMP) $(COMPILED)
	$(BIN)/python -m benchmarks.worker_throughput --fills 100000

## Bounded state: 2,000 clients trading 30, then 60 simulated days through the worker (RSS, live
## changelog, cold restart), and the same histories offline.
bench-soak: $(STAMP) $(COMPILED)
	$(BIN)/python -m benchmarks.soak --clients 2000 --days 60 --fills-per-day 5000

## Replay throughput on one core over 1,000,000 generated events.
bench-replay: $(STAMP) $(COMPILED)
	$(BIN)/python -m benchmarks.replay_throughput --events 1000000

## The same over 3,000,000 events: whether the rate holds as the state grows (last tenth against the first steady one).
bench-replay-growth: $(STAMP) $(COMPILED)
	$(BIN)/python -m benchmarks.replay_throughput --events 3000000

## `rewards whatif` against one `rewards replay` of the same 1,000,000 events, as whole commands,
## alternated for three rounds (the replay on one core, the what-if a process per rule set).
bench-whatif: $(STAMP) $(COMPILED)
	$(BIN)/python -m benchmarks.whatif_time --events 1000000 --rounds 3

## Regenerate schemas/json/ from the models.
schemas: $(STAMP)
	$(BIN)/python -m schemas.jsonschema

clean:
	rm -rf $(VENV) .build artifacts .pytest_cache .mypy_cache .hypothesis
