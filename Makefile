# `make demo`: set up .venv (once) and run the main job on the embedded sample corpus.
# `make test`: set up .venv (once) and run the whole test suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.realm-tf-installed

.PHONY: setup demo test clean

setup: $(STAMP)

# Re-installs only when the pinned requirements or setup.py change.
$(STAMP): requirements.txt requirements-nodeps.txt setup.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	$(PY) -m pip install --disable-pip-version-check -q --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

demo: setup
	$(PY) -m export.walkthrough

test: setup
	$(PY) -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
