# DeepTrain: the two commands of the README, plus build and bench.
# Heavy code runs in release builds (debug Swift is 10–900× slower in tight loops).

SWIFT ?= swift
BIN := .build/release/deeptrain

.PHONY: all deps build run test bench clean

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
# The CLI tests run the release binary, so it is built first.
test: deps
	$(SWIFT) build -c release
	$(SWIFT) test -c release --no-parallel

bench: build
	$(BIN) bench gemm
	$(BIN) bench train --model dense

clean:
	rm -rf .build
