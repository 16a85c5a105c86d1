# syntax=docker/dockerfile:1.7
#
# One image for every toolfabric process, built from the repository root:
#   docker build -t ghcr.io/toolfabric/toolfabric:0.1.0 .
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

ARG DEBIAN_IMAGE=debian:12.11-slim

# ---------------------------------------------------------------------------------------------
FROM ${DEBIAN_IMAGE} AS builder

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      python3.11 python3.11-venv python3.11-dev libpython3.11 build-essential ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN /usr/bin/python3.11 -m venv /opt/venv \
 && /opt/venv/bin/pip install --upgrade "pip>=24" "setuptools>=69" wheel
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

# Dependencies first (from pyproject.toml only), so a source change does not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['server']))" \
      > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt

# The project itself: one distribution, every service.
COPY README.md ./
COPY protos ./protos
COPY toolfabric ./toolfabric
COPY gateway ./gateway
COPY services ./services
RUN pip install --no-deps . \
 && python -m compileall -q /opt/venv/lib/python3.11/site-packages/toolfabric \
      /opt/venv/lib/python3.11/site-packages/gateway /opt/venv/lib/python3.11/site-packages/services

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
# The model repository (CPU models for this image, the vLLM model's config for the GPU init container).
COPY services/model/repository /opt/toolfabric/model-repository
RUN rm -rf /opt/toolfabric/model-repository/*/1/__pycache__
# The demo corpus, served in-cluster by k8s/components/demo-site.
COPY toolfabric/demo/site /opt/toolfabric/demo-site

# ---------------------------------------------------------------------------------------------
FROM ${DEBIAN_IMAGE} AS runtime

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="toolfabric" \
      org.opencontainers.image.description="Distributed tool-execution fabric for agentic vision-language models" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 libpython3.11 libturbojpeg0 tini ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 toolfabric \
 && useradd --uid 10001 --gid 10001 --home-dir /home/toolfabric --create-home --shell /usr/sbin/nologin toolfabric

COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /opt/toolfabric /opt/toolfabric

# Runs the CPU Triton server on the fixed in-cluster ports; extra flags are passed through.
COPY --chmod=0755 <<'EOF' /usr/local/bin/toolfabric-triton-cpu
#!/bin/sh
set -eu
export LD_LIBRARY_PATH="/opt/toolfabric/triton/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec /opt/toolfabric/triton/tritonserver \
  --model-repository="${TRITON_MODEL_REPOSITORY:-/opt/toolfabric/model-repository}" \
  --backend-directory=/opt/toolfabric/triton/backends \
  --model-control-mode=explicit \
  --grpc-port=8001 --http-port=8000 --metrics-port=8002 \
  --allow-http=true --exit-on-error=true --strict-readiness=true --log-verbose=0 \
  "$@"
EOF

# /opt/venv/bin first: the Triton stub's python3 must be this venv's (same build as libpython3.11).
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/toolfabric \
    XDG_CACHE_HOME=/tmp/.cache \
    TOOLFABRIC_DATA_DIR=/var/lib/toolfabric

RUN mkdir -p /var/lib/toolfabric && chown 10001:10001 /var/lib/toolfabric
WORKDIR /home/toolfabric
USER 10001:10001

EXPOSE 50051 8090 9090 9100 8000 8001 8002
# tini reaps zombies (sandboxed code runs as child processes) and forwards SIGTERM for graceful
# shutdown (Celery warm shutdown, gRPC drain).
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["toolfabric", "gateway"]
