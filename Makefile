# Both README commands start here; each creates (or reuses) the pinned venv first
# (.ci/bootstrap prints its path, and fails loudly if it cannot build it).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTEST_ARGS ?= -ra --durations=15 --timeout=900

.PHONY: demo test lint env

env:
	@venv=$$(.ci/bootstrap); echo "venv: $$venv"

demo:
	@venv=$$(.ci/bootstrap); "$$venv/bin/lmn-tf" demo

# ruff first (cheap), then every test; the Horovod tests launch horovodrun themselves and
# tests/test_bazel_build.py drives Bazel (installed from Debian by .ci/system-packages).
test:
	@.ci/system-packages
	@venv=$$(.ci/bootstrap); export PATH="$$venv/bin:$$PATH"; \
	ruff check . && python -m pytest tests $(PYTEST_ARGS)

lint:
	@venv=$$(.ci/bootstrap); "$$venv/bin/ruff" check .
