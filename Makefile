# lwt course: `make lab` opens the course, `make test` runs every test and notebook.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.lwt-installed

.PHONY: lab test check data student unit notebooks lint clean

# Create the virtualenv and install requirements + lwt (editable) when missing/stale.
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# Jupyter refuses to run as root (containers, cloud VMs) unless told it may.
LAB_FLAGS := $(if $(filter 0,$(shell id -u)),--allow-root,)

lab: $(STAMP)  ## start JupyterLab on the course notebooks
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(LAB_FLAGS)

test: $(STAMP)  ## unit tests + every notebook under nbval, in quick mode
	LWT_QUICK=1 $(PY) -m pytest tests notebooks --nbval-lax --nbval-current-env \
		--durations=10 -q

check: $(STAMP)  ## pre-flight check of this machine: packages, data, checkpoints, speed
	$(PY) -m lwt.doctor

data: $(STAMP)  ## download and validate MNIST and CIFAR-10 into $$LWT_DATA_DIR (or data/)
	$(PY) -m lwt.data fetch

STUDENT ?= student
student: $(STAMP)  ## learner copies of the notebooks, solutions removed, into $(STUDENT)/
	$(PY) -m lwt.student $(STUDENT)

unit: $(STAMP)  ## unit tests only
	$(PY) -m pytest tests -q

notebooks: $(STAMP)  ## re-execute every notebook in full (non-quick) mode and strip metadata
	$(PY) .ci/execute_notebooks.py notebooks/*.ipynb
	$(PY) .ci/readme_results.py

lint: $(STAMP)
	$(PY) -m pip install --quiet ruff
	$(VENV)/bin/ruff check lwt tests .ci notebooks/conftest.py

clean:
	rm -rf $(VENV) build *.egg-info
