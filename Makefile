# The two commands of the README. Everything else is set up by them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/permit-gateway demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy gateway

# The tests start hundreds of gateway processes; where PYTHONDONTWRITEBYTECODE is set (as on our CI machines)
# each would compile every module again (half a second a start): compile them once.
test: lint
	$(BIN)/python -m compileall -q gateway
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
