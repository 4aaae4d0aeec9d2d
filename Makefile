# Every target bootstraps its own virtual environment: a fresh machine needs only Python 3.11+ and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test test-quick test-docker bench bench-tabular bench-serve lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Trains the default model from the bundled sample when the store is empty, then serves it on
# http://127.0.0.1:8000 with a local API token for the write endpoints (kept in .sgdserve-token).
run: $(STAMP)
	@$(BIN)/sgdserve train --sample --if-empty
	@test -s .sgdserve-token || $(BIN)/python -c "import secrets; print(secrets.token_urlsafe(24))" > .sgdserve-token
	@echo "API token for POST /retrain and /models/<id>/activate: $${SGDSERVE_API_TOKEN:-$$(cat .sgdserve-token)}"
	SGDSERVE_API_TOKEN=$${SGDSERVE_API_TOKEN:-$$(cat .sgdserve-token)} $(BIN)/sgdserve serve

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The quick loop: no test that starts a process (tests/conftest.py enforces the `slow` mark).
test-quick: $(STAMP)
	$(BIN)/python -m pytest -q -m 'not slow and not docker'

test-docker: $(STAMP)
	$(BIN)/python -m pytest -q -m docker

bench: $(STAMP)
	$(BIN)/python bench/train_bench.py --sweep-batch
	$(BIN)/python bench/cli_train_bench.py

# Issue 10: text, gaps and Parquet against scikit-learn (about 5 minutes), and the reference
# quality of scikit-learn's pipelines on real house data (about 10 minutes).
bench-tabular: $(STAMP)
	$(BIN)/python bench/tabular_bench.py --doc docs/benchmarks-tabular.md
	$(BIN)/python bench/reference_models.py --doc docs/benchmarks-tabular.md

# Needs wrk (apt-get install wrk); about 6 minutes.
bench-serve: $(STAMP)
	$(BIN)/python bench/serve_bench.py

lint: $(STAMP)
	$(BIN)/ruff check service tests bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
