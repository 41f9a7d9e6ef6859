# `make demo` and `make test` create the virtual environment when it is missing.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench lint clean-results

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m robustness demo

test: $(STAMP)
	$(VENV)/bin/ruff check robustness tests benchmarks
	$(PY) -m pytest -q --durations=15

bench: $(STAMP)
	$(PY) benchmarks/attacks.py
	$(PY) benchmarks/sweep.py

lint: $(STAMP)
	$(VENV)/bin/ruff check robustness tests benchmarks

clean-results:
	rm -rf saved_models/*/ plots/*.png
