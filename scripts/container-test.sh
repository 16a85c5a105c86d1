#!/usr/bin/env bash
# The end-to-end check of the container deployment (`make container-test`): build the image, start
# compose.yaml + compose.demo.yaml under a throw-away project, wait until every health check passes,
# then drive the demo trajectory through the containerised gateway with the SDK
# (tests/container, asserting the answer and the recorded trajectory), and tear everything down.
#
#   scripts/container-test.sh                  # podman + podman-compose, or docker + docker compose
#   TOOLFABRIC_SKIP_BUILD=1 scripts/container-test.sh   # use the image already built
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/container/engine.sh
[ -n "$COMPOSE" ] || die "no compose: install podman-compose (apt-get install podman-compose) or the docker compose plugin"
PYTHON="${PYTHON:-.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3

if [ "${TOOLFABRIC_SKIP_BUILD:-0}" != 1 ]; then
  IMAGE="$IMAGE" scripts/build-image.sh
fi
"$ENGINE" image inspect "$IMAGE" >/dev/null 2>&1 || die "image $IMAGE not found: run scripts/build-image.sh"

# Redis: the official image if it is here or can be pulled, else the Debian stand-in.
redis_image="${TOOLFABRIC_REDIS_IMAGE:-docker.io/library/redis:7.2.7-alpine}"
if ! "$ENGINE" image inspect "$redis_image" >/dev/null 2>&1 && ! timeout 90 "$ENGINE" pull -q "$redis_image" >/dev/null 2>&1; then
  redis_image="localhost/toolfabric-redis-standin:debian-12"
  base="$("$ENGINE" image inspect --format '{{index .Config.Labels "org.opencontainers.image.base.name"}}' "$IMAGE" 2>/dev/null || true)"
  echo "[container-test] cannot pull the official Redis image; building $redis_image" >&2
  "$ENGINE" build -q --network host ${base:+--build-arg "DEBIAN_IMAGE=$base"} -t "$redis_image" \
    -f scripts/container/redis.Containerfile scripts/container >/dev/null
fi

project="toolfabric-test-$$"
port="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
blob_port="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
http_port="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export TOOLFABRIC_IMAGE="$IMAGE" TOOLFABRIC_REDIS_IMAGE="$redis_image" \
  TOOLFABRIC_GATEWAY_HOST_PORT="$port" TOOLFABRIC_BLOB_HOST_PORT="$blob_port" TOOLFABRIC_HTTP_HOST_PORT="$http_port" \
  TOOLFABRIC_REDIS_PASSWORD="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" \
  TOOLFABRIC_BLOB_URL_SECRET="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" \
  TOOLFABRIC_AUTH_REQUIRED=false  # the demo runs keyless here; keys are tested in tests/integration
compose() { $COMPOSE -p "$project" -f compose.yaml -f compose.demo.yaml "$@"; }

log="$(mktemp /tmp/toolfabric-container-test.XXXXXX.log)"
cleanup() {
  status=$?
  if [ $status -ne 0 ]; then
    echo "[container-test] failed; compose output in $log, last lines of each container:" >&2
    for c in $("$ENGINE" ps -a --filter "label=com.docker.compose.project=$project" --format '{{.Names}}'); do
      echo "--- $c" >&2; "$ENGINE" logs --tail 15 "$c" >&2 2>&1 || true
    done
  fi
  compose down -v -t 5 >>"$log" 2>&1 || true
  # podman-compose 1.0 leaves the project network behind
  "$ENGINE" network rm "${project}_default" >/dev/null 2>&1 || true
  [ $status -ne 0 ] || rm -f "$log"
  exit $status
}
trap cleanup EXIT

started=$(date +%s)
compose up -d >"$log" 2>&1
export TOOLFABRIC_CONTAINER_ENGINE="$ENGINE" TOOLFABRIC_CONTAINER_PROJECT="$project" \
  TOOLFABRIC_CONTAINER_TARGET="127.0.0.1:$port"
"$PYTHON" -m pytest -q -p no:cacheprovider tests/container "$@"
echo "[container-test] passed in $(( $(date +%s) - started ))s after the build" >&2
