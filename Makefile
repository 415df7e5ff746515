# Two commands for a newcomer: `make demo` and `make test` (`make train-demo`: the training pipeline).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo train-demo test install bench clean browser gpu-kit

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,ray]'
	touch $(STAMP)

install: $(STAMP)

# The default method, the network alone and Telea fill the held-out photos (seconds): demo-output/demo-grid.png
demo: $(STAMP)
	$(VENV)/bin/fillgap demo --out demo-output

# A tiny model trained for a minute, then filling the same photos: demo-output/train-demo-grid.png
train-demo: $(STAMP)
	$(VENV)/bin/fillgap demo --train --out demo-output

# The web app's browser test drives Debian's Chromium; as root, install it once (failure is fine:
# that test then skips and says why).
browser:
	@if [ ! -x /usr/bin/chromedriver ] && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && apt-get install -y -qq chromium chromium-driver) \
		|| echo "could not install chromium: the browser test will be skipped"; \
	fi

test: $(STAMP) browser
	$(VENV)/bin/ruff check src tests bench tools
	$(VENV)/bin/ruff format --check src tests bench tools
	PYTHONPATH=src $(VENV)/bin/lint-imports
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) bench/quality.py
	$(PY) bench/speed.py

# What a bare GPU machine needs beside the checkout (tools/gpu_train.sh): the train + val photos in
# one file (JPEG 90, long side 1024: about 34 MB, so the whole tree stays under a 64 MiB upload)
# and wheels of the pure-Python packages such machines lack (pydantic), for Python 3.11 and 3.12.
GPU_WHEELS := pydantic pydantic-core annotated-types typing-inspection typing-extensions
gpu-kit: $(STAMP)
	$(VENV)/bin/fillgap data prepare --sets photos
	$(VENV)/bin/fillgap data pack --out .gpu/train-pack.npz --codec jpeg --quality 90 --overwrite
	for v in 3.11 3.12; do $(PY) -m pip download -q --no-deps --only-binary=:all: --python-version $$v \
		--implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
		--platform manylinux2014_x86_64 -d .gpu/wheels \
		$$($(PY) -m pip freeze | grep -iE "^($$(echo $(GPU_WHEELS) | sed 's/-/[-_]/g; s/ /|/g'))==") || exit 1; done

clean:
	rm -rf $(VENV) demo-output runs
