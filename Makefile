# The two commands a user needs: `make run` and `make test`. Both prepare a fresh Debian host themselves
# (Docker engine, debootstrap, the base image).
.PHONY: run test bench lint

run:
	bash scripts/with-docker.sh bash scripts/run.sh

test:
	bash scripts/with-docker.sh bash scripts/test.sh

bench:
	bash scripts/with-docker.sh bash scripts/bench.sh

lint:
	cargo fmt --check
	cargo clippy --workspace --all-targets -- -D warnings
