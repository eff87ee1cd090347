# kfound: `make demo` runs the main job, `make test` runs the tests.
# Both create .venv with python3 -m venv and install the package into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.kfound-installed
# Two cores: keep TensorFlow from oversubscribing them when pytest runs two workers.
# JAX_DISABLE_MOST_OPTIMIZATIONS (JAX's own switch) skips XLA's optimizing passes when JAX
# compiles: the tests' models are tiny and run a few steps, so those passes cost more than
# they save (a third of the JAX pass). Results agree to float rounding.
TEST_ENV := TF_CPP_MIN_LOG_LEVEL=2 TF_NUM_INTEROP_THREADS=1 TF_NUM_INTRAOP_THREADS=1 \
	JAX_DISABLE_MOST_OPTIMIZATIONS=1
PYTEST_WORKERS ?= 2

.PHONY: test demo bench lint clean recipes

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

lint: $(STAMP)
	$(PY) -m ruff check .

# Every test under TensorFlow; under JAX and torch, the layers, initializers, callbacks, the
# dataset grammar, `import kfound`, the chapter's formulas, fine-tuning (its states, the
# feature cache, the compiled head that a search's head trials share, and resumable
# training), the smoke test of every recipe and the search's tests (tests of pure NumPy,
# stdlib or argument-check code, and those whose subprocess picks its own backend, are
# marked `backend_independent` and skip themselves there). The
# tf.data pipelines (tests/data), backbones, prediction and the finetune hypermodel run
# under TensorFlow only, for time; the recipe and search tests run them on every backend.
BACKEND_TESTS := tests/layers tests/initializers tests/callbacks tests/data/test_spec.py \
	tests/test_import.py tests/test_theory.py tests/test_finetune.py tests/test_features.py \
	tests/test_prebuild.py tests/test_compiled_head.py tests/test_resume.py tests/recipes \
	tests/tuning/test_search.py tests/tuning/test_search_backends.py

test: lint
	$(TEST_ENV) KERAS_BACKEND=tensorflow $(PY) -m pytest -n $(PYTEST_WORKERS) tests
	$(TEST_ENV) KERAS_BACKEND=jax $(PY) -m pytest -n $(PYTEST_WORKERS) $(BACKEND_TESTS)
	$(TEST_ENV) KERAS_BACKEND=torch $(PY) -m pytest -n $(PYTEST_WORKERS) $(BACKEND_TESTS)

# The offline fine-tuning demo: embedded digits, every state, and the comparison table.
demo: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 KERAS_BACKEND=tensorflow $(PY) recipes/finetune.py

# Every recipe in full (about an hour on 2 cores; `build_index.py --list` names them), then
# the committed copies of their reports and plots (recipes/results/) and the README's index.
recipes: $(STAMP)
	@names=$$($(PY) recipes/build_index.py --list) || exit 1; \
	for name in $$names; do \
		echo "== recipes/$$name.py"; \
		TF_CPP_MIN_LOG_LEVEL=2 KERAS_BACKEND=tensorflow $(PY) recipes/$$name.py \
			--output saved_models/$$name --overwrite || exit 1; \
	done
	$(PY) recipes/build_index.py --collect saved_models

bench: $(STAMP)
	@for script in benchmarks/*.py; do \
		echo "== $$script"; \
		TF_CPP_MIN_LOG_LEVEL=2 $(PY) $$script || exit 1; \
	done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
