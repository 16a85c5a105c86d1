#!/usr/bin/env bash
# Build the toolfabric image (Dockerfile at the repository root) with podman/buildah or docker.
#
#   scripts/build-image.sh                 # tag ghcr.io/toolfabric/toolfabric:<version>
#   IMAGE=registry.example/tf:1 scripts/build-image.sh
#   TOOLFABRIC_LOCAL_BASE=1 scripts/build-image.sh   # make the Debian base locally (no registry)
#   BUILD_FLAGS=--no-cache scripts/build-image.sh     # rebuild every layer (downloads stay cached)
#
# Where no container registry is reachable, the Debian base the Dockerfile names is made from
# Debian's package mirror with debootstrap (root, `apt-get install debootstrap`) and imported into
# podman. pip inside the build gets this machine's CA bundle as a build secret (never a layer) and
# its index URL as a build argument; downloads are cached between builds (a cache mount).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/container/engine.sh

DEBIAN_IMAGE="${DEBIAN_IMAGE:-$(sed -n 's/^ARG DEBIAN_IMAGE=//p' Dockerfile)}"
release="$(echo "$DEBIAN_IMAGE" | sed -n 's/.*:\([0-9][0-9.]*\)-slim$/\1/p')"

have_image() { "$ENGINE" image inspect "$1" >/dev/null 2>&1; }

local_tag="localhost/toolfabric-base:debian-${release:-12}"
local_base() {
  # A Debian rootfs from the mirror, trimmed like the -slim images, imported as an image.
  local tag="$local_tag"
  if have_image "$tag"; then echo "$tag"; return; fi
  [ "$(id -u)" -eq 0 ] || die "making the base image needs root (debootstrap)"
  command -v debootstrap >/dev/null || die "making the base image needs debootstrap: apt-get install debootstrap"
  local root
  root="$(mktemp -d /var/tmp/toolfabric-rootfs.XXXXXX)"
  echo "[image] debootstrap bookworm into $root (about a minute)" >&2
  debootstrap --variant=minbase bookworm "$root" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >&2
  cat >"$root/etc/apt/sources.list" <<SOURCES
deb ${DEBIAN_MIRROR:-http://deb.debian.org/debian} bookworm main
deb ${DEBIAN_MIRROR:-http://deb.debian.org/debian} bookworm-updates main
deb ${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security} bookworm-security main
SOURCES
  # What the official -slim images leave out: documentation, manuals, translations, apt caches.
  cat >"$root/etc/dpkg/dpkg.cfg.d/slim" <<'SLIM'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
SLIM
  find "$root/usr/share/doc" -mindepth 2 ! -name copyright -delete 2>/dev/null || true
  rm -rf "$root"/usr/share/{man,info,locale}/* "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  local got
  got="$(cat "$root/etc/debian_version")"
  if [ -n "$release" ] && [ "$got" != "$release" ]; then
    echo "[image] note: the mirror has Debian $got, the Dockerfile pins $release" >&2
  fi
  tar -C "$root" -c . | "$ENGINE" import --message "debootstrap minbase bookworm $got" - "$tag" >/dev/null
  rm -rf "$root"
  echo "$tag"
}

build_args=(--build-arg "VERSION=$VERSION")
secret_args=()
if [ "$ENGINE" = podman ]; then
  if [ "${TOOLFABRIC_LOCAL_BASE:-0}" = 1 ] || { ! have_image "$DEBIAN_IMAGE" && have_image "$local_tag"; }; then
    DEBIAN_IMAGE="$(local_base)"
  elif ! have_image "$DEBIAN_IMAGE" && ! timeout 90 podman pull -q "$DEBIAN_IMAGE" >/dev/null 2>&1; then
    echo "[image] cannot pull $DEBIAN_IMAGE; making the base locally" >&2
    DEBIAN_IMAGE="$(local_base)"
  fi
fi
build_args+=(--build-arg "DEBIAN_IMAGE=$DEBIAN_IMAGE")

# pip's CA bundle and index URL as this machine uses them (pip config, PIP_* environment).
pip_cfg() { python3 -m pip config get "$1" 2>/dev/null || true; }
ca="${PIP_CERT:-$(pip_cfg global.cert)}"
[ -n "$ca" ] || { [ -f /etc/ssl/certs/ca-certificates.crt ] && ca=/etc/ssl/certs/ca-certificates.crt; } || true
[ -n "$ca" ] && secret_args+=(--secret "id=pip-ca,src=$ca")
index="${PIP_INDEX_URL:-$(pip_cfg global.index-url)}"
case "$index" in http://*|https://*) build_args+=(--build-arg "PIP_INDEX_URL=$index") ;; esac

echo "[image] $ENGINE build -t $IMAGE (base $DEBIAN_IMAGE)" >&2
start=$(date +%s)
if [ "$ENGINE" = docker ]; then export DOCKER_BUILDKIT=1; fi
"$ENGINE" build --network host "${build_args[@]}" "${secret_args[@]}" ${BUILD_FLAGS:-} -t "$IMAGE" .
took=$(( $(date +%s) - start ))
size="$("$ENGINE" image inspect --format '{{.Size}}' "$IMAGE")"
echo "[image] built $IMAGE in ${took}s; size $(( size / 1000000 )) MB" >&2
