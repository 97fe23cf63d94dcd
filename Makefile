# Quick start on a fresh Debian machine, as root:
#   make demo   # runs a real container through the shim
#   make test   # everything CI checks
SHELL := /bin/bash
CARGO ?= cargo

HOST := $(shell rustc -vV 2>/dev/null | sed -n 's/^host: //p')
# The operator build of the daemons: linked statically against musl, so a
# shim maps only the libc code it uses, and starts in about half the time of
# a glibc build on a virtual machine (glibc's start-up reads the CPU's
# features and cache layout with `cpuid`, which traps to the hypervisor:
# 0.6 ms of a containerd shim's 1.3 ms `start` on the test VM); its code is
# laid out in the order of examples/code-order.txt (see examples/build.rs).
# Numbers in docs/PERFORMANCE.md, "musl instead of glibc".
MUSL := $(subst -gnu,-musl,$(HOST))
DAEMON_DIR := $(CURDIR)/target/$(MUSL)/release
STATIC_SHIM := $(DAEMON_DIR)/shim
FUZZ_SECONDS ?= 60
# containerd 2.3.4 (containerd, ctr and its Go runc shim), built from
# containerd's sources and shared beside this repository: the containerd
# suite runs a second time against it. Unpacked once into target/.
CONTAINERD2_TGZ ?= ../shared/containerd-2.3.4/bin.tgz
CONTAINERD2_DIR := $(CURDIR)/target/containerd-2.3.4
FUZZ_TARGETS := decode runtime_output validate authority ttrpc

.PHONY: deps demo test bench doc fuzz daemon

deps:
	@missing=""; \
	command -v runc >/dev/null 2>&1 || missing="$$missing runc"; \
	dpkg-query -W -f='$${Status}' busybox-static 2>/dev/null | grep -q "ok installed" || missing="$$missing busybox-static"; \
	command -v criu >/dev/null 2>&1 || missing="$$missing criu"; \
	command -v crun >/dev/null 2>&1 || missing="$$missing crun"; \
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
	@# The guides' build line, as written (docs/kubernetes.md, docs/daemon.md):
	@# the tests run their install line and session on what it builds.
	$(CARGO) build --release -p shim-examples --bins
	SHIM_REQUIRE_RUNC=1 $(CARGO) test --workspace
	@# The containerd suite again, against containerd 2.3.4 (bootstrap, task
	@# API v3, -info). In CI it must run; in a clone without the shared
	@# build it says so and is skipped.
	@if [ -f "$(CONTAINERD2_TGZ)" ]; then \
		if [ ! -x "$(CONTAINERD2_DIR)/containerd" ]; then \
			mkdir -p "$(CONTAINERD2_DIR)" && tar -xzf "$(CONTAINERD2_TGZ)" -C "$(CONTAINERD2_DIR)"; fi; \
		echo "make test: the containerd suite against $$($(CONTAINERD2_DIR)/containerd --version)"; \
		PATH="$(CONTAINERD2_DIR):$$PATH" SHIM_REQUIRE_RUNC=1 $(CARGO) test -p shim-examples --test containerd; \
	elif [ -n "$$CI" ]; then \
		echo "make test: $(CONTAINERD2_TGZ) is missing: CI must run the containerd 2.x leg" >&2; exit 1; \
	else \
		echo "make test: skipping the containerd 2.x leg: $(CONTAINERD2_TGZ) not found"; \
	fi
	@# cgroup v2 and systemd: the runc conformance suite, the v2 checks and a
	@# containerd subset in a guest kernel (QEMU, installed on first use), so
	@# this machine's own cgroups are never touched. See tests/guest/.
	python3 tests/guest/legs.py cgroup2 systemd
	@# The fuzz targets are only checked to compile here; `make fuzz` runs them.
	$(CARGO) check --manifest-path fuzz/Cargo.toml --bins
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps

# The musl target comes from rustup; musl-gcc (Debian's musl-tools) compiles
# the C code of a dependency (ring, for the gRPC transport's TLS).
daemon:
	@rustup target list --installed 2>/dev/null | grep -qx '$(MUSL)' || { \
		echo "make daemon: installing the Rust target $(MUSL)"; rustup target add $(MUSL); }
	@command -v musl-gcc >/dev/null 2>&1 || { \
		if [ "$$(id -u)" != 0 ]; then echo "make daemon: need root to install musl-tools" >&2; exit 1; fi; \
		echo "make daemon: installing musl-tools"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq musl-tools >/dev/null; }
	SHIM_CODE_ORDER=1 CC_$(subst -,_,$(MUSL))=musl-gcc $(CARGO) build --release -p shim-examples --target $(MUSL)
	@echo "built $(STATIC_SHIM), $(DAEMON_DIR)/shimctl and $(DAEMON_DIR)/containerd-shim-rshim-v1"

# Every table of docs/PERFORMANCE.md, in one run: the example benches save
# theirs in target/bench/, and the system bench, last, writes the document.
bench: deps daemon
	$(CARGO) bench -p shim-benches --bench rpc -- --warm-up-time 1 --measurement-time 3
	mkdir -p target/bench
	$(CARGO) run --release -p shim-benches --example many > target/bench/many.md
	RSHIM_BIN=$(DAEMON_DIR)/containerd-shim-rshim-v1 $(CARGO) run --release -p shim-benches --example containerd_shims > target/bench/containerd.md
	@# runc and then crun (which refuses this host's hybrid cgroups) as
	@# containerd's runtime in a cgroup v2 guest, one boot: emulated, so the
	@# ratios of each run count, not its times. Only the tables are kept.
	set -o pipefail; RSHIM_BIN=$(DAEMON_DIR)/containerd-shim-rshim-v1 \
		python3 tests/guest/run.py -- sh benches/scripts/guest_bench.sh 20 \
		| sed -n '/^|/p;/^$$/p' | cat -s > target/bench/guest.md
	NODE_BENCH_OUT=$(CURDIR)/target/bench/node.md RSHIM_BIN=$(DAEMON_DIR)/containerd-shim-rshim-v1 \
		$(CARGO) test -p shim-examples --test containerd node_benchmark -- --ignored --nocapture
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
