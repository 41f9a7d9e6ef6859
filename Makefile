# `make demo` and `make test` create the virtual environment when it is missing.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# `make test-xla` builds its own environment: torch_xla needs the torch release it was built for.
XLA_VENV ?= .venv-xla
XLA_PY := $(XLA_VENV)/bin/python
XLA_STAMP := $(XLA_VENV)/.installed
# The lock without the torch stack, as constraints for the XLA environment's other packages.
TORCH_STACK := ^(torch|torchvision|triton|nvidia-[a-z0-9-]+|cuda-[a-z-]+)==

.PHONY: setup demo findings test test-fast test-xla bench lint clean-results clean-findings

setup: $(STAMP)

# The exact lock, then the project itself (editable: the checkout is what runs) for the `robustness` command.
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# The demo preset (about 10 minutes on 2 cores): the same study spec as the findings run, at the demo's sizes.
demo: $(STAMP)
	$(PY) -m robustness demo --preset demo

# The study at full size (under 2 hours on 2 cores from empty folders; a rerun only rewrites docs/findings.md).
# The only run that writes docs/: any other preset writes its page under its own --out.
findings: $(STAMP)
	$(PY) -m robustness findings --preset findings --models-root saved_models/Findings --out docs

test: $(STAMP)
	$(VENV)/bin/ruff check robustness tests benchmarks
	$(PY) -m pytest -q --durations=15

# The tests not marked slow (under 2 minutes on 2 cores): for the edit-test loop; `make test` runs them all.
test-fast: $(STAMP)
	$(VENV)/bin/ruff check robustness tests benchmarks
	$(PY) -m pytest -q -m "not slow" --durations=10

# torch 2.9.0 + torch_xla 2.9.0 (the oldest torch the package supports) and the package's dependencies at the
# versions of the lock; the tests marked xla run on torch_xla's CPU device.
$(XLA_STAMP): requirements-xla.txt requirements.txt pyproject.toml
	test -x $(XLA_PY) || python3 -m venv $(XLA_VENV)
	$(XLA_PY) -m pip install --quiet --upgrade pip
	grep -v -E '$(TORCH_STACK)' requirements.txt > $(XLA_VENV)/constraints.txt
	$(XLA_PY) -m pip install --quiet -r requirements-xla.txt -c $(XLA_VENV)/constraints.txt -e .
	touch $(XLA_STAMP)

test-xla: $(XLA_STAMP)
	PJRT_DEVICE=CPU $(XLA_PY) -m pytest -q --durations=10 tests/xla

bench: $(STAMP)
	$(PY) benchmarks/attacks.py
	$(PY) benchmarks/sweep.py

lint: $(STAMP)
	$(VENV)/bin/ruff check robustness tests benchmarks

clean-results:
	rm -rf saved_models/*/ plots/*.png plots/*.pdf

# The findings run's checkpoints and results (not its committed page, table and figures).
clean-findings:
	rm -rf saved_models/Findings
