"""Renders each kustomization once per test session (kubectl kustomize, offline)."""

from __future__ import annotations

from functools import cache

import pytest

from tests.k8s.manifests import RENDERINGS, Rendered, load


@cache
def rendering(name: str) -> Rendered:
    return load(name)


@pytest.fixture(params=sorted(RENDERINGS))
def rendered(request: pytest.FixtureRequest) -> Rendered:
    """Each of: the dev overlay, the gpu overlay, the all-components fixture."""
    return rendering(request.param)


@pytest.fixture
def dev() -> Rendered:
    return rendering("dev")


@pytest.fixture
def gpu() -> Rendered:
    return rendering("gpu")


@pytest.fixture
def all_components() -> Rendered:
    return rendering("all-components")
