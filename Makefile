# `make test` and `make demo` set themselves up: a .venv with the project and its dev
# dependencies, rebuilt only when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo lint bench vectors clean browser screenshots

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The console's browser tests drive Debian's Chromium through chromium-driver: install both
# when missing and we can (root with apt-get); otherwise those tests skip, and fail under CI=true.
browser:
	@if ! { test -x /usr/bin/chromium && test -x /usr/bin/chromedriver; }; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium and chromium-driver for the console's browser tests"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    { apt-get update -qq && apt-get install -y -qq --no-install-recommends \
	        chromium chromium-driver; } || echo "warning: could not install chromium"; \
	  else \
	    echo "note: chromium/chromium-driver missing and not installable here (needs root and" \
	         "apt-get): the console's browser tests will skip (and fail under CI=true)"; \
	  fi; \
	fi

# The suite runs on pytest-xdist workers, a whole test file each (a module's console, browser
# or gateway fixture is set up once), the longest files first (tests/conftest.py). More
# workers than cores: most tests wait on processes, sockets and real-time firmware, not on
# the CPU. TEST_WORKERS=0 runs everything in this one process. A failed test runs once more
# (--reruns 1, shown as R in the summary): real-time tests (firmware on a MicroPython VM,
# LoRa timing) can miss a deadline when four workers share two cores; a real failure fails
# twice. Every rerun is a flake to fix, not to accept.
TEST_WORKERS ?= 4

test: $(STAMP) browser
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --reruns 1

# docs/img/console-*.png, the screenshots docs/console.md shows, are taken by the console's
# browser tests; only this target writes them (other runs save them to pytest's tmp dir).
screenshots: $(STAMP) browser
	PANIC_SCREENSHOTS=1 $(BIN)/python -m pytest -q tests/console/test_console_browser_*.py

demo: $(STAMP)
	$(BIN)/panicdemo $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

bench: $(STAMP) browser
	$(BIN)/python bench/run.py

vectors: $(STAMP)
	$(BIN)/python tests/vectors/generate.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
