#!/usr/bin/env bash
# Regenerates the gRPC stubs into toolfabric/v1/ (the only place they live).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m grpc_tools.protoc -I protos --python_out=. --pyi_out=. --grpc_python_out=. \
  protos/toolfabric/v1/fabric.proto
touch toolfabric/v1/__init__.py
