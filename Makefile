# DeepTrain: the two commands of the README, plus build and bench.
# Heavy code runs in release builds (debug Swift is 10–900× slower in tight loops).

SWIFT ?= swift
BIN := .build/release/deeptrain

.PHONY: all deps build run test test-kernel bench bench-check clean finetune-hf fuzz

all: build

deps:
	@bash scripts/install-deps

build: deps
	$(SWIFT) build -c release

# The demo: builds release and trains the tiny DeepSeek-V2 model on built-in decimal addition
# (recipes/demo.yaml) on 2 MPI ranks (launch/local.sh wraps mpirun), then prints a table of each
# stage before and after.
run: build
	launch/local.sh 2 recipes/demo.yaml --run-dir runs/demo

# The whole suite, in release. Suites run one after another: they share BLAS's thread pool.
# The CLI tests run .build/release/deeptrain, which `swift test -c release` builds (with
# testing enabled) along with the tests: a separate `swift build` first would compile every
# module a second time (about 3 minutes here) for a binary the test build replaces.
test: deps
	$(SWIFT) test -c release --no-parallel

# The whole suite under another OpenBLAS kernel (default Haswell: AVX2 + FMA, what a CPU without
# AVX-512 runs): every parity, resume and golden test must hold there too (bits are compared
# within one kernel). OPENBLAS_CORETYPE reaches every process the tests start, mpirun's ranks
# included; DeepTrain keeps a kernel the environment names (`deeptrain env` says so).
KERNEL ?= Haswell
test-kernel: deps
	OPENBLAS_CORETYPE=$(KERNEL) $(SWIFT) test -c release --no-parallel

# Fine-tuning a Hugging Face model directory (docs/finetuning.md): a stand-in for a downloaded
# model is made first (tokenizer + chat template by prepare, a small pretrained model written as
# a Hugging Face directory by convert), then recipes/finetune-hf.yaml fine-tunes it (SFT, then
# GRPO with a reward command), convert hands the result back, and generate --chat answers.
finetune-hf: build
	$(BIN) prepare recipes/data/pretrain.jsonl --output runs/finetune-hf-corpus --vocab-size 512 \
	  --eos '<|im_end|>' --special-token '<|im_start|>' --chat-template recipes/data/chat_template.jinja
	$(BIN) train recipes/finetune-hf-base.yaml --run-dir runs/finetune-hf-base
	$(BIN) convert runs/finetune-hf-base/checkpoints/step-00000600.h5 runs/finetune-hf-base/hf --dtype bf16 --max-shard-size 300KB
	$(BIN) train recipes/finetune-hf.yaml --run-dir runs/finetune-hf
	$(BIN) convert runs/finetune-hf/checkpoints/$$(basename $$(cat runs/finetune-hf/checkpoints/latest)) runs/finetune-hf/hf --dtype bf16
	$(BIN) generate --checkpoint runs/finetune-hf/hf --chat --prompt 'What is seven plus five?' --max-new-tokens 24

# Fuzzing the file parsers (docs/security.md): each target for FUZZ_SECONDS (default 60), with
# libFuzzer + AddressSanitizer where the toolchain builds them, else the in-repo mutation driver.
# `make test` replays every committed input (Tests/FuzzTests).
fuzz: deps
	bash scripts/fuzz $(FUZZ_TARGETS)

bench: build
	$(BIN) bench gemm
	$(BIN) bench train --model dense

# The regression guard (docs/benchmarks.md): five alternated runs of each benchmark model
# compared with this machine kind's baseline in docs/baselines.json; exits 2 when a figure is
# worse beyond its noise. `scripts/bench-check --record` refreshes the baseline.
bench-check: build
	bash scripts/bench-check

clean:
	rm -rf .build
