VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: install demo test test-fast train table bench paper clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@if [ ! -d /usr/share/datasets/fashion-mnist ]; then \
	  if [ "$$(id -u)" = 0 ]; then (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null; \
	  else sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null; fi; fi
	test -d $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

demo: install
	$(PY) src/train.py -m experiment=demo $(ARGS)

test: install
	$(PY) -m pytest -q $(ARGS)

test-fast: install
	$(PY) -m pytest -q -m 'not slow' $(ARGS)

train: install
	$(PY) src/train.py $(ARGS)

clean:
	rm -rf multirun/*/ outputs/
