# One-command set-up: every target that needs Python depends on the virtualenv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: venv run test lint demo bench status clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

# Bytecode for our own packages, as a wheel install would write it (an editable install does
# not), brought up to date before anything starts a fleet: otherwise each of 100 collectors
# started together compiles every source changed since (and all of them, each start, where
# PYTHONDONTWRITEBYTECODE is set). Files already up to date cost a stat each.
venv: $(STAMP)
	$(BIN)/python -m compileall -q collector secmaster qa ops > /dev/null

## make run: set up, then run the fleet against the real exchanges (supervisord, foreground)
run: venv
	mkdir -p data var/log var/supervisor
	$(BIN)/python -m secmaster sync || echo "secmaster: first sync incomplete; the periodic sync retries"
	$(BIN)/python -m ops.fleet render
	$(BIN)/python -m ops.supervisord -c supervisord.conf -n

## make test: set up, then lint, type-check and run the whole test suite
# Two pytest workers (pytest-xdist), one test file each at a time (module fixtures such as the
# terraform init are set up once): the suite waits on subprocesses and servers much of the
# time, so on 2 cores this halves its wall time. TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2
test: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

lint: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## make demo: the fleet offline against the replay server fed by ../shared/data/recorded
demo: venv
	$(BIN)/python -m ops.demo

## make bench: benchmarks, figures and ratios side by side in one run
bench: venv
	$(BIN)/python -m tests.bench

## make status: one table of every stream and periodic program
status: venv
	$(BIN)/python -m ops status

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
