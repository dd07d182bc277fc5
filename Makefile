# Both README commands start here; each creates (or reuses) a pinned venv first
# (.ci/bootstrap prints its path, and fails loudly if it cannot build it).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTEST_ARGS ?= -ra --durations=15 --timeout=900
# What the latest-TensorFlow run leaves out: Horovod does not build against it, and the
# Bazel checks, the benchmark smoke runs (about 4 minutes), the aiohttp-range test (both
# venvs pin the same aiohttp) and the Keras 3 model tests (both venvs have Keras 3.15.1; the
# Keras-RS example trains, exports and serves one there) test what does not depend on the
# TensorFlow version.
LATEST_DESELECT := not horovod and not bazel and not benchmark_smoke and not aiohttp_range \
	and not keras3_models
# Also left out there, to keep CI under 40 minutes on a fresh machine (about 4 minutes): the
# notebooks' content, killed-and-resumed processes (tests/test_train_run.py still resumes
# there) and the result tables' bookkeeping.
LATEST_IGNORE := --ignore=tests/notebooks --ignore=tests/reliability \
	--ignore=tests/test_capacity.py --ignore=tests/test_spatial_experiment.py \
	--ignore=tests/test_result_table.py

.PHONY: demo test test-pinned test-latest lint env env-latest

env:
	@venv=$$(.ci/bootstrap); echo "venv: $$venv"

env-latest:
	@venv=$$(.ci/bootstrap --latest); echo "venv: $$venv"

demo:
	@venv=$$(.ci/bootstrap); "$$venv/bin/lmn-tf" demo

# The whole suite on the pinned TensorFlow 2.18.1 (requirements/ci.txt), then everything but
# the Horovod and Bazel tests on the newest TensorFlow (requirements/latest.txt).
test: test-pinned test-latest

# ruff first (cheap), then every test; the Horovod tests launch horovodrun themselves and
# tests/test_bazel_build.py drives Bazel (installed from Debian by .ci/system-packages).
test-pinned:
	@.ci/system-packages
	@venv=$$(.ci/bootstrap); export PATH="$$venv/bin:$$PATH"; \
	ruff check . && python -m pytest tests $(PYTEST_ARGS)

# The newest-TensorFlow venv also gets the keras3 extra (Keras-RS, JAX; requirements/keras3.txt,
# seconds once installed), so the Keras 3 layer's JAX comparison and the Keras-RS example run.
test-latest:
	@venv=$$(.ci/bootstrap --latest); export PATH="$$venv/bin:$$PATH"; \
	python -m pip install --quiet --disable-pip-version-check --no-build-isolation \
	  -c requirements/latest.txt -c requirements/keras3.txt -e ".[keras3]" && \
	python -m pytest tests -m "$(LATEST_DESELECT)" $(LATEST_IGNORE) $(PYTEST_ARGS)

lint:
	@venv=$$(.ci/bootstrap); "$$venv/bin/ruff" check .
