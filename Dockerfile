# syntax=docker/dockerfile:1.7
#
# One image for every toolfabric process, built from the repository root:
#   docker build -t ghcr.io/toolfabric/toolfabric:0.1.0 .
#   make image        (podman/buildah, or docker; scripts/build-image.sh: local base, CA, pip cache)
#
#   toolfabric gateway                       the gRPC gateway (port 50051)
#   toolfabric worker vision|search|fetch    one Celery worker per tool queue
#   toolfabric-triton-cpu                    Triton with the CPU baseline policy (dev / no GPU)
#
# The GPU model service does not use this image: it runs NVIDIA's tritonserver vLLM image
# (k8s/components/triton-gpu); this image only supplies its model repository (init container).
#
# Debian's own python3.11 on purpose: the Triton python-backend stub links the system
# libpython3.11 and takes its standard library from the first python3 on PATH, which must be the
# same build (see shared/notes/triton-on-cpu.md). The venv is made from /usr/bin/python3.11.
#
# Builds with BuildKit (docker) and with buildah 1.28+ (podman build): no heredocs. pip may get a
# CA bundle as the build secret `pip-ca` (machines behind a TLS-inspecting proxy) and an index URL
# as the build argument PIP_INDEX_URL; neither ends up in an image layer. Downloads are cached
# across builds in a cache mount.

# The point release the image was built and run with (scripts/build-image.sh makes the same
# release from Debian's mirror with debootstrap where no container registry is reachable).
ARG DEBIAN_IMAGE=debian:12.15-slim

# ---------------------------------------------------------------------------------------------
FROM ${DEBIAN_IMAGE} AS deps

ARG PIP_INDEX_URL=""
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      python3.11 python3.11-venv python3.11-dev libpython3.11 build-essential ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# pip: the CA bundle from the optional `pip-ca` secret, the index from PIP_INDEX_URL if given.
ENV PIP_CONFIG_FILE=/dev/null
RUN --mount=type=secret,id=pip-ca --mount=type=cache,target=/root/.cache/pip \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi; \
    if [ -z "$PIP_INDEX_URL" ]; then unset PIP_INDEX_URL; fi; \
    /usr/bin/python3.11 -m venv /opt/venv \
 && /opt/venv/bin/pip install --upgrade "pip>=24" "setuptools>=69" wheel
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

# Dependencies first (from the two pyproject.toml files only), so a source change does not reinstall
# them: the SDK's plus the server distribution's, at the versions the tests ran with (scripts/container/lock.py).
COPY pyproject.toml scripts/container/constraints.txt ./
COPY server/pyproject.toml ./server/
RUN python -c "import tomllib; deps = lambda f: tomllib.load(open(f, 'rb'))['project']['dependencies']; print('\n'.join(deps('pyproject.toml') + [r for r in deps('server/pyproject.toml') if not r.startswith('toolfabric')]))" \
      > /tmp/requirements.txt
# The wheels themselves are kept in the cache mount (pip's HTTP cache stayed empty with a proxying
# index): `pip wheel` fetches only what is not there yet (building sdists such as pyturbojpeg into wheels),
# the install then runs offline from it.
RUN --mount=type=secret,id=pip-ca --mount=type=cache,target=/root/.cache/pip \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi; \
    if [ -z "$PIP_INDEX_URL" ]; then unset PIP_INDEX_URL; fi; \
    pip wheel -q -w /root/.cache/pip/wheels -r /tmp/requirements.txt -c constraints.txt \
 && pip install --no-index --find-links /root/.cache/pip/wheels -r /tmp/requirements.txt -c constraints.txt

# Triton (CPU) for the baseline policy: the server binary ships in nvidia-pytriton; build a backend
# directory with the python backend and the stub for this Python, once, at build time, so the
# container can run with a read-only root filesystem.
RUN set -eu; \
    pt="$(python -c 'import importlib.util as u; print(u.find_spec("pytriton").submodule_search_locations[0])')"; \
    mkdir -p /opt/toolfabric/triton/backends; \
    cp -r "$pt/tritonserver/backends/python" /opt/toolfabric/triton/backends/python; \
    rm -rf /opt/toolfabric/triton/backends/python/__pycache__; \
    cp "$pt/tritonserver/python_backend_stubs/3.11/triton_python_backend_stub" /opt/toolfabric/triton/backends/python/; \
    ln -s "$pt/tritonserver/bin/tritonserver" /opt/toolfabric/triton/tritonserver; \
    ln -s "$(dirname "$pt")/nvidia_pytriton.libs" /opt/toolfabric/triton/lib

# ---------------------------------------------------------------------------------------------
# The project itself, installed into an overlay tree (--root) that the runtime stage copies over the
# dependency venv: a source change rebuilds only this, never the 800 MB dependency layer.
FROM deps AS builder
COPY README.md ./
COPY protos ./protos
COPY toolfabric ./toolfabric
COPY server ./server
RUN pip install --no-deps --no-build-isolation --no-warn-script-location --root /opt/overlay . ./server \
 && site=/opt/venv/lib/python3.11/site-packages \
 && python -m compileall -q -s /opt/overlay -p / /opt/overlay$site/toolfabric /opt/overlay$site/toolfabric_server
# The model repository (CPU models for this image, the vLLM model's config for the GPU init container).
COPY server/toolfabric_server/model/repository /opt/overlay/opt/toolfabric/model-repository
# The demo corpus, served in-cluster by k8s/components/demo-site.
COPY toolfabric/demo/site /opt/overlay/opt/toolfabric/demo-site

# ---------------------------------------------------------------------------------------------
FROM ${DEBIAN_IMAGE} AS runtime

ARG VERSION=0.1.0
ARG DEBIAN_IMAGE
LABEL org.opencontainers.image.base.name="${DEBIAN_IMAGE}" \
      org.opencontainers.image.title="toolfabric" \
      org.opencontainers.image.description="Distributed tool-execution fabric for agentic vision-language models" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 libpython3.11 libturbojpeg0 tini ca-certificates \
    tesseract-ocr tesseract-ocr-eng \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 toolfabric \
 && useradd --uid 10001 --gid 10001 --home-dir /home/toolfabric --create-home --shell /usr/sbin/nologin toolfabric

COPY --from=deps /opt/venv /opt/venv
COPY --from=deps /opt/toolfabric /opt/toolfabric
COPY --from=builder /opt/overlay/ /

# Runs the CPU Triton server on the fixed in-cluster ports; extra flags are passed through.
COPY --chmod=0755 scripts/container/toolfabric-triton-cpu /usr/local/bin/toolfabric-triton-cpu
# The manifests' gRPC/HTTP probes as a command, for compose health checks.
COPY --chmod=0755 scripts/container/toolfabric-probe /usr/local/bin/toolfabric-probe

# /opt/venv/bin first: the Triton stub's python3 must be this venv's (same build as libpython3.11).
# The Redis and Triton addresses are empty on purpose: nothing listens on a container's loopback, so
# the gateway and the workers refuse to start until the deployment sets them (one line, exit 2).
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/toolfabric \
    XDG_CACHE_HOME=/tmp/.cache \
    TOOLFABRIC_DATA_DIR=/var/lib/toolfabric \
    TOOLFABRIC_REDIS_URL="" \
    TOOLFABRIC_MODEL_TRITON_URL=""

RUN mkdir -p /var/lib/toolfabric && chown 10001:10001 /var/lib/toolfabric
WORKDIR /home/toolfabric
USER 10001:10001

EXPOSE 50051 8090 9090 9100 8000 8001 8002
# tini reaps zombies (sandboxed code runs as child processes) and forwards SIGTERM for graceful
# shutdown (Celery warm shutdown, gRPC drain).
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["toolfabric", "gateway"]
