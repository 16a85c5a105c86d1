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
  die "no container engine: install podman (Debian/Ubuntu: apt-get install podman podman-compose debootstrap runc; \
Fedora: dnf install podman podman-compose) or Docker Engine with the compose plugin, then run again"
fi

if [ "$ENGINE" = podman ] && [ -z "${CONTAINERS_CONF:-}" ]; then
  # Podman's defaults fail on machines like this one, so the scripts choose for themselves and say what:
  # - runtime: crun (podman's default on Debian) refuses cgroups in hybrid mode ("cgroups in hybrid mode
  #   not supported"), and on cgroup v1 runc is the runtime that works, so anything but a pure cgroup v2
  #   host gets runc (installed here if it is missing and we are root, as scripts/setup.sh does);
  # - cgroup manager: cgroupfs unless systemd is running (no systemd, no systemd cgroup manager);
  # - limits: podman's default ulimits can exceed a sandbox's hard limits ("setrlimit RLIMIT_NOFILE:
  #   Operation not permitted"), so containers inherit this shell's limits instead.
  conf="${XDG_CACHE_HOME:-$HOME/.cache}/toolfabric/containers.conf"
  runtime=crun; why="cgroup v2"
  if [ "$(stat -fc %T /sys/fs/cgroup)" != cgroup2fs ]; then
    runtime=runc; why="crun refuses this host's hybrid/v1 cgroups"
    if ! command -v runc >/dev/null && [ ! -x /usr/sbin/runc ]; then
      if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        echo "[container] installing runc ($why)" >&2
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq runc; } >&2 \
          || die "could not install runc: apt-get install runc ($why)"
      else
        die "this host's cgroups need the runc runtime ($why): apt-get install runc"
      fi
    fi
  fi
  manager=cgroupfs; [ -d /run/systemd/system ] && manager=systemd
  mkdir -p "$(dirname "$conf")"
  {
    echo "[containers]"
    echo "default_ulimits = []"
    echo "[engine]"
    echo "runtime = \"$runtime\""
    echo "cgroup_manager = \"$manager\""
  } >"$conf"
  export CONTAINERS_CONF="$conf"
  echo "[container] podman with runtime $runtime ($why), cgroup manager $manager, ulimits inherited ($conf)" >&2
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
