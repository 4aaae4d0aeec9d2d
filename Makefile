# Every target bootstraps its own virtual environment: a fresh machine needs only Python 3.11+ and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test test-docker bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m service.cli demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-docker: $(STAMP)
	$(BIN)/python -m pytest -q -m docker

bench: $(STAMP)
	$(BIN)/python bench/train_bench.py

lint: $(STAMP)
	$(BIN)/ruff check service tests bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
