# sopreel: the two commands a new user needs are `make demo` and `make test`.
# Both set up everything first: system packages (ffmpeg with libass, espeak-ng, Noto fonts
# for Latin, CJK and Thai) through apt when missing, then the virtual environment in .venv.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEMO_SCRIPT ?= templates/scripts/forklift-preshift.yaml

.PHONY: setup system venv demo test lint bench clean

setup: system venv

# Install the system packages only when something is missing, so a warm machine pays nothing.
system:
	@missing=""; \
	command -v ffmpeg >/dev/null 2>&1 && ffmpeg -hide_banner -filters 2>/dev/null | grep -q ' ass ' || missing="$$missing ffmpeg"; \
	command -v espeak-ng >/dev/null 2>&1 || missing="$$missing espeak-ng"; \
	fc-list 2>/dev/null | grep -q 'Noto Sans CJK' || missing="$$missing fonts-noto-cjk"; \
	fc-list 2>/dev/null | grep -q 'Noto Sans Thai' || missing="$$missing fonts-noto-core"; \
	if [ -n "$$missing" ]; then \
	  echo "Installing system packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing fontconfig >/dev/null && \
	  fc-cache -f >/dev/null; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "sopreel needs Python 3.11, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,studio]'
	@touch $@

demo: setup
	$(BIN)/sopreel build $(DEMO_SCRIPT)

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: setup
	$(BIN)/python bench/draft_build.py
	$(BIN)/python bench/compose.py
	$(BIN)/python bench/trust.py

clean:
	rm -rf $(VENV) outputs bench/out
