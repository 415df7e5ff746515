# Two commands for a newcomer: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test install bench clean browser

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,ray]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/fillgap demo --out demo-output

# The web app's browser test drives Debian's Chromium; as root, install it once (failure is fine:
# that test then skips and says why).
browser:
	@if [ ! -x /usr/bin/chromedriver ] && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && apt-get install -y -qq chromium chromium-driver) \
		|| echo "could not install chromium: the browser test will be skipped"; \
	fi

test: $(STAMP) browser
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) bench/quality.py
	$(PY) bench/speed.py

clean:
	rm -rf $(VENV) demo-output runs
