"""Check prefect.yaml with Prefect's own models, but strictly.

Prefect ignores a misspelt deployment key (`schedule_s:`, `concurency_limit:`) without a word, so
a deployment can silently lose its schedule or its overlap guard. This check names every key that
Prefect's models would drop, and every entrypoint that does not resolve to a flow.
"""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path
from typing import Any

import yaml
from prefect.cli.deploy._models import ConcurrencyLimitSpec, DeploymentConfig, PrefectYamlModel, WorkPoolConfig

TOP_EXTRA = {"definitions"}  # YAML anchors only; Prefect reads them as plain data


def _allowed(model: type) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items()} | set(model.model_fields)


def check_prefect_yaml(path: Path | str) -> list[str]:
    """Problems in a prefect.yaml, in plain words; an empty list means it deploys as written."""
    path = Path(path)
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    problems = [f"unknown top-level key {k!r}" for k in data if k not in _allowed(PrefectYamlModel) | TOP_EXTRA]
    for i, deployment in enumerate(data.get("deployments") or []):
        where = f"deployments[{i}] ({deployment.get('name', '?')})"
        problems += _unknown(deployment, DeploymentConfig, where)
        problems += _unknown(deployment.get("work_pool"), WorkPoolConfig, f"{where}.work_pool")
        limit = deployment.get("concurrency_limit")
        if isinstance(limit, dict):
            problems += _unknown(limit, ConcurrencyLimitSpec, f"{where}.concurrency_limit")
        problems += _entrypoint(path.parent, deployment, where)
    try:
        PrefectYamlModel.model_validate(data)
    except ValueError as exc:
        problems.append(f"Prefect rejects it: {exc}")
    return problems


def _unknown(section: Any, model: type, where: str) -> list[str]:
    if not isinstance(section, dict):
        return []
    return [f"{where}: unknown key {k!r} (Prefect would ignore it)" for k in section if k not in _allowed(model)]


def _entrypoint(root: Path, deployment: dict, where: str) -> list[str]:
    """The entrypoint resolves to a flow that takes every parameter given (else every run is refused)."""
    entrypoint = deployment.get("entrypoint")
    if not entrypoint or ":" not in entrypoint:
        return [f"{where}: entrypoint must be 'path/to/file.py:flow_function'"]
    file, func = entrypoint.rsplit(":", 1)
    source = root / file
    if not source.is_file():
        return [f"{where}: entrypoint file {file} does not exist"]
    spec = importlib.util.spec_from_file_location(f"_entry_{source.stem}", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    flow = getattr(module, func, None)
    if flow is None or not hasattr(flow, "fn"):
        return [f"{where}: {func} in {file} is not a Prefect flow"]
    accepted = set(inspect.signature(flow.fn).parameters)
    given = [(where, deployment.get("parameters") or {})]
    given += [(f"{where}.schedules[{i}]", s.get("parameters") or {}) for i, s in enumerate(deployment.get("schedules") or [])]
    return [f"{at}: parameter {name!r} is not a parameter of {func}" for at, params in given for name in params
            if name not in accepted]
