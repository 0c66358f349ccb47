# The two commands of the README:
#   make demo   set up libtorch, build, and train the embedded demo on CPU
#   make test   set up libtorch, build, and run every test and lint
CARGO ?= cargo

.PHONY: setup build demo test lint clean-runs gpu-bundle

# Idempotent: creates the cached torch==2.11.0 venv when missing and links it as .venv/.libtorch.
setup:
	@scripts/setup.sh

build: setup
	$(CARGO) build --release

demo: build
	target/release/gan-launch --nodes 1 --gpus 1 configs/demo.yaml

# `cargo build` first: the launcher's end-to-end tests start the gan-train binary beside gan-launch.
test: setup
	$(CARGO) build
	$(CARGO) test --workspace
	$(MAKE) --no-print-directory lint

# Stripped release binaries for a GPU machine without Rust (scripts/gpu-check.sh --bin target/gpu-bundle);
# libtorch comes from that machine's own torch through LD_LIBRARY_PATH.
gpu-bundle: build
	mkdir -p target/gpu-bundle
	strip -o target/gpu-bundle/gan-launch target/release/gan-launch
	strip -o target/gpu-bundle/gan-train target/release/gan-train
	@du -ch target/gpu-bundle/* | tail -n1

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean-runs:
	rm -rf runs
