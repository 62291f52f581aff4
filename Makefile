# sopreel: the two commands a new user needs are `make demo` and `make test`.
# Both set up everything first: system packages (ffmpeg with libass, espeak-ng, Noto fonts
# for Latin, CJK and Thai, Symbola for emoji) through apt when missing, then the virtual
# environment in .venv, exactly as uv.lock pins it.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
SHELL  := /bin/bash
DEMO_SCRIPT ?= templates/scripts/forklift-preshift.yaml
UV_VERSION := 0.13.9
UV     := $(BIN)/uv
export UV_PYTHON_DOWNLOADS := never
export UV_LINK_MODE := copy
# Byte-compile at install: with PYTHONDONTWRITEBYTECODE set (CI, containers) every command
# would otherwise compile Prefect's sources again, about 1.5 s each time on two cores.
export UV_COMPILE_BYTECODE := 1
CPU_BENCHMARKS := edit_loop compose trust prefect_ops importing delivery

.PHONY: setup system browser venv uv lock demo test lint bench bench-gpu clean

setup: system venv
	@$(BIN)/python -m compileall -q flows stages >/dev/null

# Install the system packages only when something is missing, so a warm machine pays nothing.
system:
	@missing=""; \
	command -v ffmpeg >/dev/null 2>&1 && ffmpeg -hide_banner -filters 2>/dev/null | grep -q ' ass ' || missing="$$missing ffmpeg"; \
	command -v espeak-ng >/dev/null 2>&1 || missing="$$missing espeak-ng"; \
	fc-list 2>/dev/null | grep -q 'Noto Sans CJK' || missing="$$missing fonts-noto-cjk"; \
	fc-list 2>/dev/null | grep -q 'Noto Sans Thai' || missing="$$missing fonts-noto-core"; \
	fc-list 2>/dev/null | grep -q 'Symbola' || missing="$$missing fonts-symbola"; \
	if [ -n "$$missing" ]; then \
	  echo "Installing system packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing fontconfig >/dev/null && \
	  fc-cache -f >/dev/null; \
	fi

# What the package tests add: Debian's Chromium (the LMS page runs in it, driven by Playwright
# from the lock) and scorm-again, the SCORM runtime, exactly as tests/browser/package-lock.json
# pins it. Installed only when missing or when the lock file changed.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "Installing Chromium"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
	@command -v npm >/dev/null 2>&1 || { \
	  echo "Installing npm"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends npm >/dev/null; }
	@[ tests/browser/node_modules/.package-lock.json -nt tests/browser/package-lock.json ] || \
	  npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error

venv: $(VENV)/.installed

uv:
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "sopreel needs Python 3.11, found " + sys.version.split()[0]'
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	@$(UV) --version 2>/dev/null | grep -qx 'uv $(UV_VERSION)' || $(BIN)/python -m pip install -q uv==$(UV_VERSION)

# The environment is exactly uv.lock (every package pinned with hashes). uv itself comes from
# PyPI at the version the lock pins, into the same virtual environment.
$(VENV)/.installed: pyproject.toml uv.lock | uv
	$(UV) sync --frozen --extra studio --extra dev
	@touch $@

# Re-resolve the lock from pyproject.toml: the only way uv.lock changes. Keeps every other pin;
# `make lock UPGRADE=transformers` moves one package, `make lock UPGRADE=all` moves everything.
lock: uv
	$(UV) lock $(if $(filter all,$(UPGRADE)),--upgrade,$(if $(UPGRADE),--upgrade-package $(UPGRADE)))

demo: setup
	$(BIN)/sopreel build $(DEMO_SCRIPT)

# The suite on two pytest-xdist workers, a test file each (each with its own Prefect server);
# TEST_WORKERS=1 runs it in one process.
TEST_WORKERS ?= 2
test: setup browser
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q --durations=20 $(if $(filter-out 1,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile)

lint: venv
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

# The CPU benchmarks at full size; each prints its provenance and tables, also kept in
# bench/out/NAME.md. `make test` runs every benchmark in its quick mode instead.
bench: setup
	@mkdir -p bench/out
	@set -o pipefail; for name in $(CPU_BENCHMARKS); do \
	  echo "== bench/$$name.py"; \
	  $(BIN)/python bench/$$name.py | tee bench/out/$$name.md || exit 1; \
	done

# Every GPU benchmark in one go (about 10 minutes on one H100/H200); tables in bench/out/gpu/.
bench-gpu: setup
	$(BIN)/python bench/gpu.py

clean:
	rm -rf $(VENV) outputs bench/out
