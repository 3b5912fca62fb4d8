# The set-up contract: `make serve` and `make test` on a fresh machine with Python 3.11+.
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	&& echo $$p && break; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
LAB := .venv-lab
LAB_STAMP := $(LAB)/.installed-stamp

.PHONY: serve test lint bench fuzz soak clean-data

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "nbjobs needs Python 3.11 or newer on PATH" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

# JupyterLab's own environment (interactive notebooks): kept apart from nbjobs' (requirements-lab.txt)
$(LAB_STAMP): requirements-lab.txt | $(BIN)/python
	test -x $(LAB)/bin/python || $(PYTHON) -m venv $(LAB)
	$(LAB)/bin/python -m pip install --quiet --upgrade pip
	$(LAB)/bin/python -m pip install --quiet -r requirements-lab.txt
	@touch $(LAB_STAMP)

serve: $(STAMP) $(LAB_STAMP)
	$(BIN)/nbjobs serve $(ARGS)

test: $(STAMP) $(LAB_STAMP)
	$(BIN)/python -m pytest $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)
	cd bench && ../$(BIN)/python latency.py $(ARGS) && ../$(BIN)/python throughput.py $(ARGS_THROUGHPUT) \
	  && ../$(BIN)/python fork.py $(ARGS_FORK) && ../$(BIN)/python fork_memory.py \
	  && ../$(BIN)/python streams.py && ../$(BIN)/python lab.py

# Long API fuzzing: 200 examples per operation and auth mode, new requests each run (~30 min of CPU).
fuzz: $(STAMP)
	mkdir -p var
	NBJOBS_FUZZ_EXAMPLES=$${NBJOBS_FUZZ_EXAMPLES:-200} NBJOBS_FUZZ_SEED=$${NBJOBS_FUZZ_SEED:-random} \
	NBJOBS_FUZZ_REPORT=$${NBJOBS_FUZZ_REPORT:-var/fuzz-report.json} \
	$(BIN)/python -m pytest tests/security/test_fuzz.py -q $(ARGS)

# The reliability run behind docs/reliability.md: the fault and security tests at full strength,
# a longer fuzz, the load bench (5,000 jobs from 50 clients, embedded and Celery; 2,000 over 100k ended
# jobs), 400 back-to-back jobs checking each ran in the kernel it recorded (4 CPU-bound processes beside),
# then the whole suite three times beside 4 CPU-bound processes and 8 GiB of busy memory.
soak: $(STAMP)
	mkdir -p var
	NBJOBS_FUZZ_EXAMPLES=$${NBJOBS_FUZZ_EXAMPLES:-50} NBJOBS_FUZZ_SEED=random NBJOBS_FUZZ_REPORT=var/fuzz-report.json \
	$(BIN)/python -m pytest -q tests/security tests/integration/test_adversarial.py \
	  tests/integration/test_crash_mixed.py tests/integration/test_crash.py tests/integration/test_startup_errors.py \
	  tests/integration/test_distributed.py tests/integration/test_distributed_restart.py $(ARGS)
	cd bench && ../$(BIN)/python load.py --clients 50 --jobs 5000 --listers 4 --workers 2 --json ../var/load.json
	cd bench && ../$(BIN)/python load.py --clients 50 --jobs 5000 --listers 4 --workers 2 --celery \
	  --json ../var/load-celery.json
	cd bench && ../$(BIN)/python load.py --clients 50 --jobs 2000 --listers 4 --workers 2 \
	  --seed-ended 100000 --json ../var/load-100k.json
	$(BIN)/python bench/kernel_identity.py --jobs 400 --cpu 4
	$(BIN)/python bench/under_load.py --runs 3 --cpu 4 --memory-gib 8 --json var/under-load.json

clean-data:
	rm -rf var
