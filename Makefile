VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: install demo test test-fast train table eval locality status dashboard sync bench gpu-carry paper ablations clean

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
	$(PY) -m gmmvit.sweeps.table multirun/demo

# the suite on every core (JOBS=1: one process, e.g. to read a failure's output in order)
test: install
	$(PY) -m pytest -q -n $(or $(JOBS),auto) $(ARGS)

test-fast: install
	$(PY) -m pytest -q -n $(or $(JOBS),auto) -m 'not slow' $(ARGS)

train: install
	$(PY) src/train.py $(ARGS)

# the paper's table from the run folders (metrics.json, config.yaml): make table [SWEEP=multirun/NAME]
table: install
	$(PY) -m gmmvit.sweeps.table $(or $(SWEEP),multirun) $(ARGS)

# a trained run, or every finished run of a sweep, evaluated again with its recorded config: top-1, top-5,
# per class, confusion -> RUN/eval/; a sweep's table of its runs -> SWEEP/eval_<name>.md and .json:
#   make eval SWEEP=multirun/<sweep> | RUN=multirun/<sweep>/<run> [CKPT=best|last]
#             [ARGS='dataset=digits precision=fp32 attention=explicit']
eval: install
	$(if $(and $(RUN),$(SWEEP)),$(error make eval takes RUN= (one run) or SWEEP= (every run of a sweep), not both))
	$(PY) -m gmmvit.config.evaluation $(or $(RUN),$(SWEEP)) --ckpt $(or $(CKPT),best) $(ARGS)

# mean attention distance per layer and head of a run, or of every finished run of a sweep plus its
# figure (SWEEP/attention_locality.png): make locality SWEEP=multirun/<sweep> | RUN=multirun/<sweep>/<run> [CKPT=last]
locality: install
	$(if $(and $(RUN),$(SWEEP)),$(error make locality takes RUN= (one run) or SWEEP= (every run of a sweep), not both))
	$(PY) -m gmmvit.config.locality $(or $(RUN),$(SWEEP)) --ckpt $(or $(CKPT),best) $(ARGS)

# each run of a sweep (epochs done, pace, ETA) and the sweep's ETA: make status [SWEEP=multirun/NAME]
status: install
	$(PY) -m gmmvit.sweeps.status $(or $(SWEEP),multirun) $(ARGS)

# the sweep's W&B workspace view and report (created, or updated in place): make dashboard [SWEEP=multirun/NAME]
# without an API key or network: written to multirun/NAME/wandb_dashboard.json, to publish later
dashboard: install
	$(PY) -m gmmvit.sweeps.dashboard $(or $(SWEEP),multirun) $(ARGS)

# the runs logged offline uploaded to W&B, each run's newest log (it holds the whole run): make sync [SWEEP=multirun/NAME] [ARGS=--dry]
sync: install
	$(PY) -m gmmvit.sweeps.sync $(or $(SWEEP),multirun) $(ARGS)

# train-step img/s per model x mask, loader img/s per core, GPU epoch: one markdown report
bench: install
	$(PY) -m gmmvit.bench $(ARGS)

# .whl/: what a bare GPU image lacks for the GPU check (gmmvit.bench.gpu_check): the wheels of this
# venv's hydra-core, omegaconf, antlr4 and timm (pure Python), and Debian's Fashion-MNIST files.
# The device tool carries .whl; the command to run there is in README "GPU figures".
CARRIED := hydra-core|omegaconf|antlr4-python3-runtime|timm
gpu-carry: install
	rm -rf .whl && mkdir -p .whl/fashion-mnist
	$(PY) -m pip wheel -q --no-deps -w .whl $$($(PY) -m pip list --format=freeze | grep -iE '^($(CARRIED))==')
	cp /usr/share/datasets/fashion-mnist/*-ubyte.gz .whl/fashion-mnist/
	@du -sh .whl

# the paper's whole table (5 models x none/elm/gmm x 4 datasets) into multirun/paper/ on one launcher:
#   make paper [LAUNCHER=local|local_gpus|slurm|ray_gpus] [SEEDS=0,1,2] [DRY=1] [ARGS='hydra.launcher.partition=gpu']
# DRY=1 lists the jobs, what is finished, and the GPU-hours left. Relaunching resumes / skips.
paper: install
	$(PY) -m gmmvit.config.paper_grid --launcher $(or $(LAUNCHER),local) --seeds $(or $(SEEDS),0) $(if $(DRY),--dry) $(ARGS)

# the paper's open questions, one multirun each (conf/experiment/ablation/: pooling, placement, combine,
# kernels, data_fraction) into multirun/ablation/<name>/, on the model and dataset ARGS names:
#   make ablations [ONLY=pooling,data_fraction] [LAUNCHER=...] [DRY=1] [ARGS='model=pit dataset=fashion_mnist seed=0,1,2,3,4']
# DRY=1 lists each preset's jobs and the GPU-hours left; `make table SWEEP=multirun/ablation` reads them.
ablations: install
	$(PY) -m gmmvit.config.ablations --launcher $(or $(LAUNCHER),local) $(if $(ONLY),--only $(ONLY)) $(if $(DRY),--dry) $(ARGS)

# what the harness rebuilds by itself: caches and Hydra's default outputs/. Never a run:
# multirun/ holds every trained run (single runs too); delete a sweep you no longer want by hand (rm -rf multirun/NAME)
clean:
	rm -rf outputs/ .pytest_cache/
	find . \( -path ./.venv -o -path ./multirun \) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
