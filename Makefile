# fanzha — every command makes its own virtual environment (.venv) on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: run test lint corpus-check base train export evaluate card bench model clean

$(VENV)/.core: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -e .
	@touch $@

$(VENV)/.dev: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -e ".[train,dev]"
	@touch $@ $(VENV)/.core

## run: classify the demo messages with the committed default model (the service will take over this target)
run: $(VENV)/.core
	$(VENV)/bin/fanzha classify --input examples/messages.jsonl --quiet

## test: the whole test suite (tiny models built on the fly; the committed model for behaviour)
test: $(VENV)/.dev
	@$(PY) -m pytest || { rc=$$?; [ $$rc -ne 5 ] || echo "pytest collected no tests" >&2; exit $$rc; }

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .

corpus-check: $(VENV)/.dev
	$(PY) -m fanzha.datasets.check

## model: rebuild the default model from scratch (base → fine-tune → export → report → bench → card), ~40 min on 2 cores
base: $(VENV)/.dev
	$(PY) -m fanzha.training.build_base --output_dir runs/base --num_layers 6
train: $(VENV)/.dev
	$(PY) -m fanzha.training.train --base_model runs/base --output_dir runs/model --epochs 6
export: $(VENV)/.dev
	$(PY) -m fanzha.training.export --model_dir runs/model --output_dir models/default
evaluate: $(VENV)/.dev
	$(PY) -m fanzha.training.evaluate --model_dir models/default --report_dir reports
card: $(VENV)/.dev
	$(PY) -m fanzha.training.model_card --model_dir models/default --metrics reports/metrics.json --bench reports/bench_text.json
model: base train export evaluate bench card

## bench: torch eager vs ORT fp32 vs ORT int8 (torch and fp32 rows need the local runs/ from `make model`)
bench: $(VENV)/.dev
	$(PY) bench/text.py --checkpoint runs/model --fp32 runs/export/model.fp32.onnx --json reports/bench_text.json

clean:
	rm -rf runs .pytest_cache
