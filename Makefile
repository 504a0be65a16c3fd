# Set-up is part of every target: a fresh clone needs nothing but Python 3.11 and make.
PY      ?= python3
VENV    ?= .venv
# Every shared GTZAN track (gtzan-mini ∪ gtzan-more) with its artist: folds that never put one
# artist on both sides (protocol group). DATA=../shared/data/gtzan-mini PROTOCOL=cv FOLDS=10 REPEATS=5
# is the paper's protocol (random folds: same artists on both sides, optimistic).
DATA    ?= manifests/gtzan-shared.csv
PROTOCOL ?= group
FOLDS   ?= 5
REPEATS ?= 3
OUT     ?= runs/evaluate-$(PROTOCOL)
BIN      = $(VENV)/bin
VVENV   ?= $(VENV)-vision
VBIN     = $(VVENV)/bin
CHROMIUM ?= /usr/bin/chromium
# tests/apps/test_library.py speaks its "not music" files with espeak-ng.
ESPEAK  ?= /usr/bin/espeak-ng
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup chromium espeak evaluate model docs test test-core test-vision clean

$(BIN)/genrevision: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch 2.13.0 CPU is a local wheel here; elsewhere pip takes it from PyPI.
	$(BIN)/pip install -q "torch==2.13.0" -e ".[test,lite,fast,serve,serve-test,ray,embed,mirdata,tag,tag-test]"
	# The HEAR 2021 validator (tests/apps/test_hear.py): without its tensorflow dependency, which it
	# needs only for TensorFlow models.
	$(BIN)/pip install -q --no-deps "hearvalidator==2021.0.2"
	touch $@

setup: $(BIN)/genrevision

# Debian's headless Chromium for the web page's browser test (Playwright drives it; it downloads
# no browser of its own). Installed once: nothing to do when $(CHROMIUM) exists.
chromium: $(CHROMIUM)

espeak: $(ESPEAK)

$(ESPEAK):
	$(SUDO) apt-get update -q
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q espeak-ng

$(CHROMIUM):
	$(SUDO) apt-get update -q
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver

# torchvision/timm backbones (AlexNet, VGG16, ResNet, MobileNetV2, timm:*) need the
# matching torch build: a separate venv, built once (the stamp file).
$(VBIN)/.vision-stamp: pyproject.toml
	$(PY) -m venv $(VVENV)
	echo "*" > $(VVENV)/.gitignore
	$(VBIN)/pip install -q --upgrade pip
	$(VBIN)/pip install -q "torch==2.14.1" "torchvision==0.29.1" timm -e ".[test]"
	touch $@

# The paper's tables (I-IV, paper recipe), the default recipe and the MFCC baseline on the same
# folds: artist-grouped 5-fold CV x 3 repeats on the 243 shared tracks by default (genres of one
# artist are trained on, named, and not scored); PROTOCOL=paper for the paper's 90/10 splits.
# Rerunning after an interruption resumes finished folds.
evaluate: setup
	$(BIN)/genrevision evaluate $(DATA) --protocol $(PROTOCOL) --folds $(FOLDS) --repeats $(REPEATS) --out $(OUT)

# A model to start with: the default recipe trained on every shared track (gtzan-mini and
# gtzan-more, 243 tracks, inner searches grouped by artist; a few minutes the first time, seconds
# once the feature cache holds them). Skipped while the file is newer than its inputs (the
# manifest, the tracks and the recipe definitions); the venv is only needed to exist.
MODEL_DATA ?= manifests/gtzan-shared.csv
MODEL   ?= models/gtzan-shared.model
model: $(MODEL)

$(MODEL): $(MODEL_DATA) $(shell find ../shared/data/gtzan-mini ../shared/data/gtzan-more -type f 2>/dev/null) src/genrevision/recipes.py | $(BIN)/genrevision
	$(BIN)/genrevision train $(MODEL_DATA) --model $@

# The docs site (mkdocs.yml, docs/): the `docs` extra installed once into the project's venv (the
# stamp; again only when pyproject.toml changes), then a strict build into site/: a broken link, a
# missing page or an API reference to an object that does not exist fails it. Offline: no CDN
# fonts, nothing fetched at build time; the site opens from site/index.html without a server.
$(BIN)/.docs-stamp: pyproject.toml | $(BIN)/genrevision
	$(BIN)/pip install -q -e ".[docs]"
	touch $@

docs: $(BIN)/.docs-stamp
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -d site/

test: test-core test-vision docs

test-core: setup chromium espeak
	$(BIN)/python -m pytest -q

test-vision: $(VBIN)/.vision-stamp
	$(VBIN)/python -m pytest -q tests/vision

clean:
	rm -rf $(VENV) $(VENV)-vision .pytest_cache site
