# Sourced by scripts/build-image.sh and scripts/container-test.sh: picks the container engine and
# adapts podman to machines like the CI sandbox. Sets ENGINE (podman|docker) and COMPOSE (a command).
# shellcheck shell=bash

die() { echo "$(basename "$0"): $*" >&2; exit 1; }

if [ -n "${ENGINE:-}" ]; then
  command -v "$ENGINE" >/dev/null || die "ENGINE=$ENGINE is not installed"
elif command -v podman >/dev/null; then
  ENGINE=podman
elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  ENGINE=docker
else
  die "no container engine: install podman (Debian/Ubuntu: apt-get install podman buildah runc podman-compose; \
Fedora: dnf install podman podman-compose) or Docker Engine with the compose plugin, then run again"
fi

if [ "$ENGINE" = podman ] && [ -z "${CONTAINERS_CONF:-}" ]; then
  # crun refuses hybrid cgroups ("cgroups in hybrid mode not supported"): use runc there. Podman's
  # default ulimits can exceed a sandbox's hard limits ("setrlimit RLIMIT_NOFILE"): inherit instead.
  conf="${XDG_CACHE_HOME:-$HOME/.cache}/toolfabric/containers.conf"
  mkdir -p "$(dirname "$conf")"
  {
    echo "[containers]"
    echo "default_ulimits = []"
    if [ "$(stat -fc %T /sys/fs/cgroup)" != cgroup2fs ] && [ -x /usr/sbin/runc ]; then
      echo "[engine]"
      echo 'runtime = "runc"'
    fi
  } >"$conf"
  export CONTAINERS_CONF="$conf"
fi

if [ "$ENGINE" = podman ]; then
  if podman compose version >/dev/null 2>&1; then COMPOSE="podman compose"
  elif command -v podman-compose >/dev/null; then COMPOSE="podman-compose"
  else COMPOSE=""; fi
else
  if docker compose version >/dev/null 2>&1; then COMPOSE="docker compose"; else COMPOSE=""; fi
fi

# The image tag the manifests pin: the project version.
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)"
IMAGE="${IMAGE:-ghcr.io/toolfabric/toolfabric:$VERSION}"
