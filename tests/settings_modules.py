"""Every settings module of the server (one per service: toolfabric_server/<layer>/settings.py, ...)."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from types import ModuleType

from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "server"


def settings_modules() -> list[ModuleType]:
    """Found by file name, so a service that adds its settings module is covered without a list to update."""
    found = sorted(p.relative_to(SERVER).with_suffix("") for p in (SERVER / "toolfabric_server").rglob("settings.py"))
    return [importlib.import_module(".".join(p.parts)) for p in found]


def settings_classes() -> list[type[BaseSettings]]:
    """Every BaseSettings class defined in a settings module."""
    return [cls for module in settings_modules() for _, cls in inspect.getmembers(module, inspect.isclass)
            if issubclass(cls, BaseSettings) and cls is not BaseSettings and cls.__module__ == module.__name__]


def clear_settings_cache() -> None:
    """Every cached accessor of every settings module, so the next call reads the environment again."""
    for module in settings_modules():
        for value in vars(module).values():
            if callable(getattr(value, "cache_clear", None)):
                value.cache_clear()
