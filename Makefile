# Two commands on a fresh machine (Python 3.11, root): `make search` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
BUDGET ?= 2GFLOPs
FMNIST := /usr/share/datasets/fashion-mnist

.PHONY: setup data browser postgres search lint docs test test-explore test-fast bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

data:
	@test -d $(FMNIST) || (apt-get update -q && apt-get install -y -q dataset-fashion-mnist)

browser:
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || (apt-get update -q && apt-get install -y -q chromium chromium-driver)

postgres:
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || (apt-get update -q && apt-get install -y -q postgresql)

search: setup data
	$(PY) cli.py search --budget $(BUDGET)

lint: setup
	$(VENV)/bin/ruff check .

docs: setup   # the documentation site in site/; --strict: a broken link or a missing reference fails
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

test: setup data browser postgres lint docs
	$(PY) -m pytest -q

test-explore: setup data browser postgres   # Hypothesis draws fresh examples (CI's profile repeats the same ones)
	HYPOTHESIS_PROFILE=explore $(PY) -m pytest -q tests/test_hardening_generated.py tests/test_redaction_generated.py tests/test_hardening_inputs.py

test-fast: setup data lint   # no subprocess, Ray, browser or kill -9 tests, on two pytest-xdist workers
	$(PY) -m pytest -q -m "not slow" -n 2

bench: setup data
	$(PY) bench/cost_bench.py

clean:
	rm -rf $(VENV) .pytest_cache site
