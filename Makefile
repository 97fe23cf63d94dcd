# Quick start on a fresh Debian machine, as root:
#   make demo   # runs a real container through the shim
#   make test   # everything CI checks
SHELL := /bin/bash
CARGO ?= cargo
PACKAGES := runc busybox-static

.PHONY: deps demo test bench doc fmt clippy

deps:
	@missing=""; \
	command -v runc >/dev/null 2>&1 || missing="$$missing runc"; \
	dpkg-query -W -f='$${Status}' busybox-static 2>/dev/null | grep -q "ok installed" || missing="$$missing busybox-static"; \
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

demo: deps
	$(CARGO) run --release -p shim-examples --bin shimctl -- demo

test: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	SHIM_REQUIRE_RUNC=1 $(CARGO) test --workspace

bench: deps
	$(CARGO) build --release -p shim-examples
	$(CARGO) bench -p shim-benches --bench rpc -- --warm-up-time 1 --measurement-time 3
	$(CARGO) bench -p shim-benches --bench system

doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps
