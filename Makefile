# qti-net developer commands. `make run` and `make test` work on a fresh clone (INTERFACE.md, "Running").
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Re-install only when the declared dependencies change.
STAMP := $(VENV)/.installed
ASYNCAPI_TOOLS := tools/asyncapi
ASYNCAPI_STAMP := $(ASYNCAPI_TOOLS)/node_modules/.installed
LINT_PATHS := qti_runtime qti_host contracts/qti_contracts services devtools frontends scripts/long_functions.py

.PHONY: help venv lint format test pytest browser pdf-libs asyncapi run bench clean

help:
	@echo "make run    start everything locally (services, mail sink, demo data) until Ctrl-C"
	@echo "make test   lint + the whole test suite against real RabbitMQ and Postgres"
	@echo "make lint   ruff check, ruff format --check, mypy"
	@echo "make format apply ruff's formatting and import sorting"
	@echo "make bench  end-to-end benchmark with the machine's own limits (BENCH_ARGS=--quick for a short run)"
	@echo "make clean  remove the virtual environment and caches"

venv: $(STAMP)

$(STAMP): pyproject.toml contracts/pyproject.toml
	@if [ ! -x "$(BIN)/python" ]; then \
		$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
			|| { echo "error: $(PYTHON) is older than 3.11; run e.g. 'make PYTHON=python3.11 ...'" >&2; exit 1; }; \
		$(PYTHON) -m venv $(VENV); \
	fi
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e contracts -e '.[dev]'
	@touch $(STAMP)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(LINT_PATHS)

format: venv
	$(BIN)/ruff check --fix --select I .
	$(BIN)/ruff format .

# The dashboard test drives Debian's Chromium (never a browser download); install it when missing.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing Debian's chromium for the dashboard test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# The PDFs (WeasyPrint: reporting's period report, notification's certificates) need Debian's Pango and
# the DejaVu fonts the certificate names by path; install them when missing.
pdf-libs:
	@ldconfig -p 2>/dev/null | grep -q 'libpango-1.0.so.0' && ldconfig -p | grep -q 'libpangoft2-1.0.so.0' \
		&& test -f /usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf || { \
		echo "installing Debian's Pango and DejaVu fonts for the PDFs"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core >/dev/null; }

pytest: venv browser pdf-libs
	$(BIN)/python -m pytest tests -q

# The AsyncAPI document is validated with the official parser when it exists.
asyncapi: venv
	@if [ -f docs/asyncapi.json ]; then \
		if [ ! -f "$(ASYNCAPI_STAMP)" ] || [ "$(ASYNCAPI_TOOLS)/package-lock.json" -nt "$(ASYNCAPI_STAMP)" ]; then \
			npm ci --prefix $(ASYNCAPI_TOOLS) --no-audit --no-fund --loglevel=error && touch "$(ASYNCAPI_STAMP)"; \
		fi; \
		node $(ASYNCAPI_TOOLS)/validate.mjs docs/asyncapi.json; \
	else \
		echo "docs/asyncapi.json not generated yet: AsyncAPI validation skipped"; \
	fi

test: venv lint pytest asyncapi

run: venv pdf-libs
	$(BIN)/python -m qti_host.cli run

# End to end by default; e.g. `make bench BENCH_ARGS=--quick`, `BENCH_ARGS="--rate 150 --duration 30"`,
# `BENCH_ARGS=registration` (one service's benchmark). Results: bench/results/.
bench: venv
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build dist *.egg-info contracts/*.egg-info
	find . -name __pycache__ -type d -prune -not -path './$(ASYNCAPI_TOOLS)/node_modules/*' -exec rm -rf {} +
