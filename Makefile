# `make demo`: install, build a folder of real sample photos with edited copies, index it, search, compare.
# `make test`: install with the test extras and run the whole suite.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
DEMO ?= demo-photos
export HF_HUB_DISABLE_TELEMETRY = 1

.PHONY: install install-test demo test lint bench

install:
	$(PIP) install -q torch==2.13.0   # the CPU build; a bare `torch` requirement would pull a multi-GB CUDA build
	$(PIP) install -q -e '.[samples,onnx]'

install-test: install
	$(PIP) install -q -e '.[samples,onnx,test]'
	@# Azurite (Azure Blob emulator) for the az:// test, from npm
	@if command -v npm >/dev/null 2>&1; then npm ci --prefix tests/emulators --no-audit --no-fund --loglevel=error; \
	else echo "(npm not found: the az:// source test will be skipped)"; fi

demo: install
	$(PYTHON) -m lookalike.samples $(DEMO)
	lookalike index $(DEMO)/photos --model efficientnet-lite0
	lookalike search $(DEMO)/query_chelsea_small.jpg $(DEMO)/photos/rocket.png --db $(DEMO)/photos/.lookalike --top 5
	lookalike compare $(DEMO)/photos/chelsea.png $(DEMO)/photos/edited/chelsea_half.png --model efficientnet-lite0
	@if $(PYTHON) -m lookalike.samples --clip-cached; then \
		lookalike index $(DEMO)/photos --model clip --db $(DEMO)/clip.db && \
		lookalike search --text "a cat" --db $(DEMO)/clip.db --top 3; \
	else echo "(CLIP weights are not in the Hugging Face cache: text search skipped; see README)"; fi

test: install-test
	$(PYTHON) -m pytest -q

lint:
	ruff check src tests benchmarks
