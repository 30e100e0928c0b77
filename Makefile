# Two commands do all set-up on a fresh Debian machine with Python 3.11:
#   make demo   - creates .venv, installs, runs the whole flow on the embedded default
#   make test   - same set-up, plus redis-server and checkov, then the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TOOLS  := .venv-tools
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | md5sum | cut -c1-12)

.PHONY: demo test install system-deps tools bench clean fmt

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@# the install's own chatter (build-backend warnings) goes to a log, shown only if it fails
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]' > $(VENV)/install.log 2>&1 || (cat $(VENV)/install.log; exit 1)
	rm -f $(VENV)/.installed-*
	touch $@

# Debian packages the tests and benchmarks use: redis-server (one per region), wrk (HTTP load).
system-deps:
	@command -v redis-server >/dev/null && command -v wrk >/dev/null && command -v chromium >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server wrk chromium >/dev/null)
	@# the distribution's service is neither used nor stopped: tests start their own servers on free ports

# checkov has pins of its own that clash with the platform's; it gets its own environment.
tools: $(TOOLS)/bin/checkov

$(TOOLS)/bin/checkov:
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --upgrade pip
	$(TOOLS)/bin/pip install --quiet 'checkov>=3.3,<3.4'

demo: $(STAMP)
	$(BIN)/atelier demo

test: $(STAMP) system-deps tools
	@# two workers (pytest-xdist): most tests wait on a subprocess or a server half the time;
	@# the tests sharing a session-built world stay on one worker (tests/conftest.py)
	PATH="$(CURDIR)/$(TOOLS)/bin:$$PATH" $(BIN)/pytest -n 2 --dist loadgroup

bench: $(STAMP) system-deps
	$(BIN)/python benchmarks/run_all.py
	$(BIN)/python benchmarks/report.py

fmt:
	terraform fmt -recursive terraform

clean:
	rm -rf $(VENV) $(TOOLS)
