"""No Docker engine runs here, so the compose file is checked against the code it deploys."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.settings import PUBLISHED_SESSION_SECRET, Settings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "deploy/compose.yml").read_text())
    return loaded


def test_every_service_runs_a_real_entry_point(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"redis", "gateway", "saves", "leaderboard"}
    for name in ("gateway", "saves", "leaderboard"):
        python, flag, module = services[name]["command"]
        assert (python, flag, module) == ("python", "-m", f"services.{name}")
        assert importlib.util.find_spec(f"{module}.__main__") is not None


def test_workers_can_scale(compose: dict[str, Any]) -> None:
    for name in ("saves", "leaderboard"):
        worker = compose["services"][name]
        assert "container_name" not in worker and "ports" not in worker


def test_environment_names_are_settings(compose: dict[str, Any]) -> None:
    known = {name.upper() for name in Settings.model_fields}
    for name in ("gateway", "saves", "leaderboard"):
        assert set(compose["services"][name]["environment"]) <= known


def test_compose_runs_in_production_and_needs_a_secret_of_its_own(compose: dict[str, Any]) -> None:
    """The port is published on every interface: no default secret, and production's checks on it."""
    assert PUBLISHED_SESSION_SECRET not in (ROOT / "deploy/compose.yml").read_text()
    for name in ("gateway", "saves", "leaderboard"):
        environment = compose["services"][name]["environment"]
        assert environment["ENVIRONMENT"] == "${ENVIRONMENT:-production}"
        required = environment["SESSION_SECRET"]
        assert required.startswith("${SESSION_SECRET:?") and "32" in required  # compose stops, saying why
        assert "$(" not in required and required.count("}") == 1  # nothing compose would try to interpolate


def test_redis_persists_and_proves_its_modules(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    assert redis["image"].startswith("redis:8")
    assert redis["command"][1:3] == ["--appendonly", "yes"]
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    probe = " ".join(redis["healthcheck"]["test"])
    assert "MODULE LIST" in probe and "search" in probe and "ReJSON" in probe
    for name in ("gateway", "saves", "leaderboard"):
        assert compose["services"][name]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_the_dockerfile_copies_what_the_services_import() -> None:
    dockerfile = (ROOT / "deploy/Dockerfile").read_text()
    for path in ("shared", "services", "web/public", "pyproject.toml"):
        assert f"COPY {path}" in dockerfile or f"COPY {path} " in dockerfile


@pytest.mark.parametrize("module", ["services.gateway", "services.saves", "services.leaderboard", "devtools.stack"])
def test_every_command_has_help(module: str) -> None:
    result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and "usage:" in result.stdout
