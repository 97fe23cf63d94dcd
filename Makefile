# Quick start on a fresh Debian machine, as root:
#   make demo   # runs a real container through the shim
#   make test   # everything CI checks
SHELL := /bin/bash
CARGO ?= cargo

HOST := $(shell rustc -vV 2>/dev/null | sed -n 's/^host: //p')
# The operator build of the daemon: glibc linked statically, so the shim maps
# only the libc code it uses (about 0.7 MiB less resident memory per shim),
# and its code laid out in the order of examples/code-order.txt (about 1 MiB
# less just after Start; see examples/build.rs).
STATIC_SHIM := $(CURDIR)/target/$(HOST)/release/shim
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := decode runtime_output validate authority ttrpc

.PHONY: deps demo test bench doc fuzz daemon

deps:
	@missing=""; \
	command -v runc >/dev/null 2>&1 || missing="$$missing runc"; \
	dpkg-query -W -f='$${Status}' busybox-static 2>/dev/null | grep -q "ok installed" || missing="$$missing busybox-static"; \
	command -v criu >/dev/null 2>&1 || missing="$$missing criu"; \
	command -v containerd >/dev/null 2>&1 || missing="$$missing containerd"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" != 0 ]; then \
			echo "make deps: need root to install$$missing (run: sudo apt-get install$$missing)" >&2; exit 1; \
		fi; \
		echo "make deps: installing$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@command -v cargo >/dev/null 2>&1 || { echo "make deps: cargo (stable Rust) is required" >&2; exit 1; }
	@# A client generated from the seed proto in another language (grpcio) is part of the tests.
	@python3 -c 'import grpc, grpc_tools' 2>/dev/null || { echo "make deps: installing grpcio grpcio-tools"; \
		python3 -m pip install --quiet grpcio grpcio-tools; }

# The demo's shimctl starts the `shim` daemon from beside itself: build both.
demo: deps
	$(CARGO) build --release -p shim-examples --bins
	$(CURDIR)/target/release/shimctl demo

test: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	SHIM_REQUIRE_RUNC=1 $(CARGO) test --workspace
	@# The fuzz targets are only checked to compile here; `make fuzz` runs them.
	$(CARGO) check --manifest-path fuzz/Cargo.toml --bins
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps

daemon:
	SHIM_CODE_ORDER=1 RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release -p shim-examples --target $(HOST)
	@echo "built $(STATIC_SHIM) and $(dir $(STATIC_SHIM))shimctl"

# Every table of docs/PERFORMANCE.md, in one run: the example benches save
# theirs in target/bench/, and the system bench, last, writes the document.
bench: deps daemon
	$(CARGO) bench -p shim-benches --bench rpc -- --warm-up-time 1 --measurement-time 3
	mkdir -p target/bench
	$(CARGO) run --release -p shim-benches --example many > target/bench/many.md
	RSHIM_BIN=$(dir $(STATIC_SHIM))containerd-shim-rshim-v1 $(CARGO) run --release -p shim-benches --example containerd_shims > target/bench/containerd.md
	SHIM_BIN=$(STATIC_SHIM) $(CARGO) bench -p shim-benches --bench system

# Runs each fuzz target for FUZZ_SECONDS. cargo-fuzz wants nightly flags;
# RUSTC_BOOTSTRAP lets the stable toolchain accept them.
fuzz: deps
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	cd fuzz && for t in $(FUZZ_TARGETS); do \
		RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps
