# The two set-up commands of the README: `make demo` (main job) and `make test` (test suite).
# Both create ./.venv on first use and install the pinned stack plus san_mm into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test demo clean

$(STAMP): requirements/runtime.txt requirements/tests.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade 'pip>=23'
	$(PY) -m pip install --quiet -r requirements/runtime.txt -r requirements/tests.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest tests -q -n 2 --dist loadfile

demo: $(STAMP)
	$(PY) tools/demo_fashion_mnist.py

clean:
	rm -rf $(VENV) work_dirs
