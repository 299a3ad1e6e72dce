# lwt course: `make lab` opens the course, `make test` runs every test and notebook.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.lwt-installed

.PHONY: lab test browser emulator wheelhouse check data student unit nbval notebooks lint clean

# Create the virtualenv and install requirements + lwt (editable) when missing/stale.
# Offline (a workshop's laptops): make lab WHEELHOUSE=/path/to/wheelhouse installs from
# the folder `make wheelhouse` filled, with no network.
WHEELHOUSE ?=
PIP_SOURCE := $(if $(WHEELHOUSE),--no-index --find-links $(WHEELHOUSE) \
	$(if $(wildcard $(WHEELHOUSE)/constraints.txt),-c $(WHEELHOUSE)/constraints.txt),)
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(if $(WHEELHOUSE),,$(PY) -m pip install --quiet --upgrade pip)
	$(PY) -m pip install --quiet $(PIP_SOURCE) -r requirements.txt
	$(PY) -m pip install --quiet $(PIP_SOURCE) --no-deps -e .
	touch $(STAMP)

# Jupyter refuses to run as root (containers, cloud VMs) unless told it may.
LAB_FLAGS := $(if $(filter 0,$(shell id -u)),--allow-root,)

# make lab NOTEBOOKS=student opens make student's learner copies (made if missing).
NOTEBOOKS ?= course
lab: $(STAMP)  ## start JupyterLab on the course notebooks (NOTEBOOKS=student: copies)
ifeq ($(NOTEBOOKS),student)
	test -d $(STUDENT) || $(PY) -m lwt.student $(STUDENT)
	$(VENV)/bin/jupyter lab --notebook-dir=$(STUDENT) $(LAB_FLAGS)
else ifeq ($(NOTEBOOKS),course)
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(LAB_FLAGS)
else
	$(error NOTEBOOKS must be course or student, got $(NOTEBOOKS))
endif

# The unit tests; every course notebook in JupyterLab in headless Chromium (tests/
# test_browser.py: no exception, the # NBVAL_CHECK_OUTPUT cells' outputs as committed,
# as nbval compares them, every figure and widget, a slider that redraws); and the
# student copies (solutions removed) under nbval (tests/test_student.py). All in quick
# mode, on both cores at once (pytest-xdist; tests/conftest.py puts the two long files
# first, --no-loadscope-reorder keeps that order): one worker starts on the browser
# pass, the other on the nbval pass, the unit-test files go to whichever is free, and
# torch takes one thread in each (OMP_NUM_THREADS=1): two notebooks share the 2 cores.
# LWT_BROWSER=00,07 make test picks notebooks for the browser (none: none),
# LWT_BROWSER_COPY=student opens the student copies there instead.
LWT_BROWSER ?= all
LWT_BROWSER_COPY ?= course
TEST_WORKERS ?= 2
test: $(STAMP) browser emulator  ## unit tests, notebooks in a browser, student copies under nbval
	LWT_QUICK=1 OMP_NUM_THREADS=1 LWT_BROWSER=$(LWT_BROWSER) \
		LWT_BROWSER_COPY=$(LWT_BROWSER_COPY) \
		$(PY) -m pytest tests -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder \
		--durations=10 -q -rs

# tests/test_browser.py drives Debian's Chromium (never a browser download): installed
# here when missing and this is a root shell with apt-get; else the test says what to do.
# LWT_BROWSER=none (no browser test) needs none.
CHROMIUM := $(or $(LWT_CHROMIUM),$(shell command -v chromium chromium-browser \
	google-chrome chrome 2>/dev/null | head -n1),/usr/bin/chromium)
# $(call APT_IF_MISSING,PACKAGE,WANTED,TEST): install Debian's PACKAGE for the test file
# TEST when the shell condition WANTED holds, apt-get exists and this is a root shell;
# otherwise (or if the install fails) TEST skips itself with one line.
APT_GET = DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	$(1) >/dev/null
APT_IF_MISSING = if $(2) && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	echo "installing Debian's $(1) for $(3)"; \
	$(call APT_GET,$(1)) || { apt-get update -qq && $(call APT_GET,$(1)); } \
	|| echo "no $(1): $(3) will be skipped"; fi
browser:  ## Debian's Chromium for the browser test (apt-get, as root), if missing
	@$(call APT_IF_MISSING,chromium,[ "$(LWT_BROWSER)" != none ] && ! [ -x "$(CHROMIUM)" ],tests/test_browser.py)

# tests/test_portability.py runs the int8 files as an AVX2-only CPU would, under QEMU's
# user-mode emulator: Debian's qemu-user, installed here when missing (root, apt-get).
emulator:  ## Debian's qemu-user for the AVX2-only int8 check (apt-get, as root), if missing
	@$(call APT_IF_MISSING,qemu-user,[ "$$(uname -m)" = x86_64 ] && ! command -v qemu-x86_64 >/dev/null,tests/test_portability.py)

# Every wheel the course needs, for laptops without fast internet, run on a connected
# machine with the learners' OS and Python: PyTorch's CPU-only build (~0.19 GB instead of
# the CUDA build's ~3 GB with its libraries), then the rest of requirements.txt.
WHEELS ?= wheelhouse
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
wheelhouse: $(STAMP)  ## download every wheel into $(WHEELS)/ (then: make lab WHEELHOUSE=...)
	$(PY) -m pip download --quiet -d $(WHEELS) --index-url $(TORCH_INDEX) torch torchvision
	ls $(WHEELS) | sed -nE 's/^(torch|torchvision)-([^-]+)-.*\.whl$$/\1==\2/p' \
		> $(WHEELS)/constraints.txt
	$(PY) -m pip download --quiet -d $(WHEELS) --find-links $(WHEELS) \
		-c $(WHEELS)/constraints.txt -r requirements.txt
	du -sh $(WHEELS)

check: $(STAMP)  ## pre-flight check of this machine: packages, data, checkpoints, speed
	$(PY) -m lwt.doctor

data: $(STAMP)  ## download and validate MNIST and CIFAR-10 into $$LWT_DATA_DIR (or data/)
	$(PY) -m lwt.data fetch

STUDENT ?= student
student: $(STAMP)  ## learner copies of the notebooks, solutions removed, into $(STUDENT)/
	$(PY) -m lwt.student $(STUDENT)

unit: $(STAMP)  ## unit tests only (full mode): no browser, no notebook runs
	$(PY) -m pytest tests -q -m "not browser and not notebooks"

nbval: $(STAMP)  ## the course notebooks under nbval, quick mode (a developer's check)
	LWT_QUICK=1 $(PY) -m pytest notebooks --nbval-lax --nbval-current-env -q

notebooks: $(STAMP)  ## re-execute every notebook in full (non-quick) mode and strip metadata
	$(PY) .ci/execute_notebooks.py notebooks/*.ipynb
	$(PY) .ci/readme_results.py

lint: $(STAMP)
	$(PY) -m pip install --quiet ruff
	$(VENV)/bin/ruff check lwt tests .ci notebooks/conftest.py

clean:
	rm -rf $(VENV) build *.egg-info
