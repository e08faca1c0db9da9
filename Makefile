# Two commands on a fresh machine:  `make pipeline`  and  `make test`.
# `make setup` installs what is missing (Debian packages, .venv, pip requirements)
# and is quick when nothing is.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed
# FluidSynth, the GM SoundFonts of data/soundfonts.csv, and Chromium for the browser test.
APT_PACKAGES := fluidsynth libfluidsynth3 fluid-soundfont-gm fluidr3mono-gm-soundfont musescore-general-soundfont \
	timgm6mb-soundfont csound-soundfont chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# The default dataset: every later stage reads it by default.  Clips of all
# the fonts of data/soundfonts.csv (our own synthesiser too), varied as a
# user's recording would be; the default network.
DATASET := data/working/multi-font-10000
COUNT := 10000
SEED := 42
GENERATE_ARGS := --soundfont all --variation realistic
TRAIN_ARGS :=
# The seed's single-font experiment (README, Results): `make single-font`.
# (FluidR3_GM named, so that a default SoundFont a user stored, fluidsynth_wrapper.py --set-default, changes nothing.)
SINGLE_FONT := DATASET=data/working/single-notes-2000 COUNT=2000 GENERATE_ARGS="--soundfont FluidR3_GM" TRAIN_ARGS="--arch harmonic"

.PHONY: setup apt-packages pipeline single-font dataset features training-data model train test bench clean-venv

setup: apt-packages $(STAMP)

apt-packages:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# requirements.txt says what the project needs; constraints.txt pins the versions it was measured with.
$(STAMP): requirements.txt constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -c constraints.txt
	touch $(STAMP)

# The whole pipeline on the default dataset; finished stages are skipped:
# clips -> chromagrams -> splits and scaler -> a trained, evaluated model
# (train.py evaluates it) -> its misclassified clips -> the leaderboard.
pipeline: setup model
	$(PY) analyze_errors.py $$($(PY) leaderboard.py $(DATASET) --best)
	$(PY) leaderboard.py $(DATASET)

single-font:
	$(MAKE) --no-print-directory pipeline $(SINGLE_FONT)

dataset: setup $(DATASET)/parameters.csv

$(DATASET)/parameters.csv:
	$(PY) generate_audio_samples.py -c $(COUNT) -s $(SEED) -o $(DATASET) -f flac $(GENERATE_ARGS)

features: dataset $(DATASET)/features/features.json

$(DATASET)/features/features.json: $(DATASET)/parameters.csv
	$(PY) extract_features.py $(DATASET) --plot

training-data: features $(DATASET)/training-data/splits.csv

$(DATASET)/training-data/splits.csv: $(DATASET)/features/features.json
	$(PY) prepare_training.py $(DATASET) --overwrite

# Trains the default architecture unless the dataset has a finished model;
# `make train` always trains another one.
model: training-data
	@$(PY) leaderboard.py $(DATASET) --best >/dev/null 2>&1 || $(MAKE) --no-print-directory train

train: training-data
	$(PY) train.py $(DATASET) $(TRAIN_ARGS)

# JAX, a second Keras backend, for the tests that keep the model code backend-neutral (tests/test_backends.py),
# installed beside the environment rather than in it: TensorFlow imports JAX wherever it finds one (measured: ~145 MiB
# more in every process that imports TensorFlow), so the pipeline's own processes never see it.
JAX_BACKEND := $(VENV)/jax-backend
JAX_STAMP := $(JAX_BACKEND)/.installed

# Without its dependencies (numpy, scipy, ml_dtypes, opt_einsum: TensorFlow's and scikit-learn's, in .venv already);
# into an emptied folder, since pip --target would keep an earlier version's records beside the new ones.
$(JAX_STAMP): $(STAMP)
	rm -rf $(JAX_BACKEND)
	$(PY) -m pip install -q --no-deps --target $(JAX_BACKEND) jax jaxlib -c constraints.txt
	touch $(JAX_STAMP)

test: setup $(JAX_STAMP)
	$(PY) -m pytest -q tests

# The feature benchmark measures the seed's clean single-font clips (issue 4's figures); the others the default.
bench: model $(JAX_STAMP)
	@$(MAKE) --no-print-directory features $(SINGLE_FONT)
	@set -e; for b in bench/bench_*.py; do m=$$(basename $$b .py); echo "== $$m"; $(PY) -m bench.$$m; done

clean-venv:
	rm -rf $(VENV)
