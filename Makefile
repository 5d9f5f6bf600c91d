# fanzha — every command makes its own virtual environment (.venv) on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: run test lint corpus-check base train export evaluate card conversation bench bench-media bench-serve bench-soak bench-accounts bento media-fixtures model clean

export BENTOML_DO_NOT_TRACK ?= true

$(VENV)/.core: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -e .
	@touch $@

# the postgres extra: the PostgreSQL variants of the store tests run against a throwaway cluster (tests/postgres.py)
$(VENV)/.dev: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -e ".[train,dev,distributed,postgres]"
	@touch $@ $(VENV)/.core

## run: serve the committed default model on http://localhost:3000 (imports it into the BentoML store first)
run: $(VENV)/.core
	$(VENV)/bin/fanzha import-model
	$(VENV)/bin/bentoml serve fanzha.serving.service:Fanzha --host 127.0.0.1 --port 3000

## bento: a deployable Bento (service + fanzha wheel + model from the store): bentoml serve fanzha:latest
bento: $(VENV)/.core
	$(VENV)/bin/fanzha import-model
	rm -rf dist && $(PY) -m pip wheel --quiet --no-deps -w dist .
	$(VENV)/bin/bentoml build

## test: the whole test suite (tiny models built on the fly; the committed model for behaviour)
test: $(VENV)/.dev
	@$(PY) -m pytest || { rc=$$?; [ $$rc -ne 5 ] || echo "pytest collected no tests" >&2; exit $$rc; }

## lint: ruff's checks and its formatter, as CI runs them (`ruff format .` fixes the second)
lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

corpus-check: $(VENV)/.dev
	$(PY) -m fanzha.datasets.check

## model: rebuild the default model from scratch (base → one fine-tune on the whole text corpus, now rounds 1-15 → export → report → bench → card → conversation model; the shipped v9 is this recipe on rounds 1-11), ~2.5 h on 2 cores (the fine-tune ~78 min, the conversation model ~45 min), ~1 h with one GPU (the conversation model and the report run on the CPU)
base: $(VENV)/.dev
	$(PY) -m fanzha.training.build_base --output_dir runs/base --num_layers 6
TRAIN_ARGS = --base_model runs/base --epochs 4 --batch_size 32 --learning_rate 8e-5 --behaviour_weight 0.5 \
	--max_pos_weight 2 --seed 13
train: $(VENV)/.dev
	$(PY) -m fanzha.training.train $(TRAIN_ARGS) --output_dir runs/model
export: $(VENV)/.dev
	$(PY) -m fanzha.training.export --model_dir runs/model --output_dir models/default
evaluate: $(VENV)/.dev
	$(PY) -m fanzha.training.evaluate --model_dir models/default --report_dir reports
card: $(VENV)/.dev
	$(PY) -m fanzha.training.model_card --model_dir models/default --metrics reports/metrics.json --bench reports/bench_text.json
## conversation: the conversation model beside the text model (a head on its encoder, no torch; ~45 min on 2 cores); kept out, in runs/conversation-candidate, when the head there does as well or better on dev
conversation: $(VENV)/.dev
	$(PY) -m fanzha.datasets.conversation_corpus > /dev/null
	$(PY) -m fanzha.training.conversation --model_dir models/default --c_grid 0.1,0.3
model: base train export evaluate bench card conversation

## sweep: issue 13's comparison (6 vs 12 layers, with and without rounds 4-5, behaviour loss); on a GPU ~6 min
sweep: $(VENV)/.dev
	$(PY) -m fanzha.training.build_base --output_dir runs/base6 --num_layers 6
	$(PY) -m fanzha.training.build_base --output_dir runs/base12 --num_layers 12
	$(PY) -m fanzha.training.sweep --plan training/sweeps/issue13.json --output_dir runs/sweep --parallel 7

## bench: torch eager vs ORT fp32 vs ORT int8 (torch and fp32 rows need the local runs/ from `make model`)
bench: $(VENV)/.dev
	$(PY) bench/text.py --checkpoint runs/model --fp32 runs/export/model.fp32.onnx --json reports/bench_text.json

## bench-media: OCR settings side by side + memory over 1,000 images; the 60-second video vs naive sampling
bench-media: $(VENV)/.dev
	$(PY) bench/ocr.py --memory 1000 --json reports/bench_ocr.json
	$(PY) bench/video.py --json reports/bench_video.json

## bench-accounts: risk-state ingest (items/s), alert latency, 8 writers × 10,000 reports with a restart (SQLite)
bench-accounts: $(VENV)/.dev
	$(PY) bench/accounts.py --json reports/bench_accounts.json

## bench-soak: 60 s of mixed valid and hostile requests from 16 threads against the real service (loopback)
bench-soak: $(VENV)/.dev
	$(PY) bench/soak.py --seconds 60 --json reports/bench_soak.json

## bench-serve: the real service under 1/8/32 clients, images, and a 10,000-request memory soak (loopback)
bench-serve: $(VENV)/.dev
	$(PY) bench/serve_load.py --json reports/bench_serve.json

## media-fixtures: regenerate tests/fixtures/media and bench/media (installs CJK fonts when missing)
media-fixtures: $(VENV)/.dev
	$(PY) tests/fixtures/make_media.py

clean:
	rm -rf runs dist .pytest_cache
