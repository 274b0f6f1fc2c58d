"""The deploy files checked against the code they deploy, without running them.

Compose also runs for real, on a Docker engine, in test_compose.py. Kubernetes does not: no
container registry answers on these machines, so no node image (kind, k3s) can be had, and the
manifests are only parsed here.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from services.gateway.app import ROUTES
from shared.protocol import COMMAND_STREAMS, CommandStream
from shared.settings import PUBLISHED_SESSION_SECRET, Settings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "deploy/compose.yml").read_text())
    return loaded


def test_every_service_runs_a_real_entry_point(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"redis", "gateway", "saves", "leaderboard", *METRICS_SERVICES}
    for name in ("gateway", "saves", "leaderboard"):
        python, flag, module = services[name]["command"]
        assert (python, flag, module) == ("python", "-m", f"services.{name}")
        assert importlib.util.find_spec(f"{module}.__main__") is not None


# The `metrics` profile: Prometheus and Grafana, started only when asked for.
METRICS_SERVICES = ("prometheus", "grafana")
# What the dashboard may chart: the metrics GET /metrics serves (API.md's names).
SERVED_METRICS = {
    "cachequest_http_requests_total",
    "cachequest_http_request_duration_seconds_bucket",
    "cachequest_stream_length",
    "cachequest_stream_pending",
    "cachequest_stream_lag",
    "cachequest_dead_letters_total",
    "cachequest_events_total",
}


def test_prometheus_scrapes_the_gateway_from_the_one_address_allowed(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert all(services[name]["profiles"] == ["metrics"] for name in METRICS_SERVICES)
    config = yaml.safe_load((ROOT / "deploy/prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics" and "/metrics" in gateway_get_paths()
    (target,) = job["static_configs"][0]["targets"]
    host, port = target.split(":")
    assert host == "gateway" and port == services["gateway"]["environment"]["PORT"]
    assert "./prometheus.yml:/etc/prometheus/prometheus.yml:ro" in services["prometheus"]["volumes"]
    (pool,) = compose["networks"]["default"]["ipam"]["config"]
    address = ipaddress.ip_address(services["prometheus"]["networks"]["default"]["ipv4_address"])
    assert address in ipaddress.ip_network(pool["subnet"]) and address not in ipaddress.ip_network(pool["ip_range"])
    allowed = Settings(metrics_allow=services["gateway"]["environment"]["METRICS_ALLOW"]).metrics_allow
    networks = [ipaddress.ip_network(network) for network in allowed.split(",")]
    assert any(address in network for network in networks)
    assert any(ipaddress.ip_address("127.0.0.1") in network for network in networks)  # the health check


def test_the_grafana_dashboard_charts_what_the_gateway_serves(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    for volume in grafana["volumes"]:
        assert (ROOT / "deploy" / volume.split(":")[0]).is_dir()
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/cache-quest.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    named = {name for expression in expressions for name in re.findall(r"cachequest_[a-z_]+", expression)}
    assert named <= SERVED_METRICS
    titles = " ".join(panel["title"].lower() for panel in dashboard["panels"])
    for shown in ("throughput", "p99", "lag", "pending", "dead letters"):
        assert shown in titles
    datasource = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    (source,) = datasource["datasources"]
    assert source["url"] == "http://prometheus:9090"
    assert all(panel["datasource"]["uid"] == source["uid"] for panel in dashboard["panels"])


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
    assert redis["image"] == REDIS_IMAGE
    assert redis["command"][1:3] == ["--appendonly", "yes"]
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    probe = " ".join(redis["healthcheck"]["test"])
    assert "MODULE LIST" in probe and "search" in probe and "ReJSON" in probe
    for name in ("gateway", "saves", "leaderboard"):
        assert compose["services"][name]["depends_on"]["redis"]["condition"] == "service_healthy"


# Redis 8 unless REDIS_IMAGE names another with JSON and Search (test_compose.py's stand-in, a mirror's).
REDIS_IMAGE = "${REDIS_IMAGE:-redis:8}"


@pytest.mark.parametrize("file", ["compose.yml", "compose.cluster.yml"])
def test_both_compose_files_suit_compose_v1_and_v2_and_take_the_base_images_as_variables(file: str) -> None:
    """docker-compose 1.29 refuses a top-level `name:` (the Makefile gives -p); the build's base images
    default to the Dockerfile's own."""
    loaded = yaml.safe_load((ROOT / "deploy" / file).read_text())
    assert "name" not in loaded and "version" not in loaded
    dockerfile = (ROOT / "deploy/Dockerfile").read_text()
    defaults = dict(re.findall(r"^ARG (\w+_IMAGE)=(\S+)$", dockerfile, re.MULTILINE))
    assert set(defaults) == {"PYTHON_IMAGE", "NODE_IMAGE"}
    for name in SERVICES:
        arguments = loaded["services"][name]["build"]["args"]
        assert {key: arguments[key] for key in defaults} == {
            key: f"${{{key}:-{value}}}" for key, value in defaults.items()
        }
    assert re.search(r"^FROM \$\{NODE_IMAGE\} AS web$", dockerfile, re.MULTILINE)
    assert re.search(r"^FROM \$\{PYTHON_IMAGE\}$", dockerfile, re.MULTILINE)


def test_the_build_context_leaves_out_a_checkouts_environment_and_data() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".data", ".cache", "**/node_modules", "test-artifacts", ".git"} <= set(ignored)


def test_the_dockerfile_copies_what_the_services_import() -> None:
    dockerfile = (ROOT / "deploy/Dockerfile").read_text()
    for path in ("shared", "services", "web/public", "web/admin", "clients/js/src", "pyproject.toml"):
        assert f"COPY {path}" in dockerfile or f"COPY {path} " in dockerfile


@pytest.mark.parametrize(
    "module",
    [
        "services.gateway",
        "services.saves",
        "services.leaderboard",
        "devtools.stack",
        "bench.measure.instructions",
        "bench.measure.loaded",
    ],
)
def test_every_command_has_help(module: str) -> None:
    result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and "usage:" in result.stdout


# The cluster variant: deploy/compose.cluster.yml and deploy/k8s/.

SERVICES = ("gateway", "saves", "leaderboard")
NODES = ("redis-1", "redis-2", "redis-3")
SETTING_NAMES = {name.upper() for name in Settings.model_fields}
K8S = ROOT / "deploy/k8s"


def partition_streams(stream: CommandStream, partitions: int) -> set[tuple[str, str]]:
    """The (stream key, group) pairs a command stream's workers consume, one per partition."""
    return {(stream.key(n), stream.group) for n in range(partitions)}


def gateway_get_paths() -> set[str]:
    return {route.path for route in ROUTES if route.method == "GET"}


@pytest.fixture(scope="module")
def cluster_compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "deploy/compose.cluster.yml").read_text())
    return loaded


def node_addresses(compose: dict[str, Any]) -> list[str]:
    return [compose["services"][name]["networks"]["cluster"]["ipv4_address"] for name in NODES]


def test_the_cluster_compose_runs_three_nodes_their_init_and_the_services(cluster_compose: dict[str, Any]) -> None:
    services = cluster_compose["services"]
    assert set(services) == {*NODES, "cluster-init", *SERVICES}
    for name in SERVICES:
        assert services[name]["command"] == ["python", "-m", f"services.{name}"]
        assert importlib.util.find_spec(f"services.{name}.__main__") is not None
        assert services[name]["depends_on"] == {"cluster-init": {"condition": "service_completed_successfully"}}
    for name in ("saves", "leaderboard"):
        assert "container_name" not in services[name] and "ports" not in services[name]


def test_the_cluster_nodes_are_redis_8_append_only_with_both_modules_at_fixed_addresses(
    cluster_compose: dict[str, Any],
) -> None:
    (pool,) = cluster_compose["networks"]["cluster"]["ipam"]["config"]
    subnet, dynamic = ipaddress.ip_network(pool["subnet"]), ipaddress.ip_network(pool["ip_range"])
    for name in NODES:
        node = cluster_compose["services"][name]
        assert node["image"] == REDIS_IMAGE
        command = node["command"]
        assert command[0] == "redis-server"  # the entry point adds the modules to redis-server's arguments
        options = dict(zip(command[1::2], command[2::2], strict=True))
        assert options["--cluster-enabled"] == "yes" and options["--appendonly"] == "yes"
        probe = " ".join(node["healthcheck"]["test"])
        assert "MODULE LIST" in probe and "search" in probe and "ReJSON" in probe
        assert any(volume.endswith(":/data") for volume in node["volumes"])
    addresses = [ipaddress.ip_address(address) for address in node_addresses(cluster_compose)]
    assert len(set(addresses)) == len(NODES)
    assert all(address in subnet and address not in dynamic for address in addresses)


def test_the_cluster_init_joins_every_node_once_then_waits_for_cluster_state_ok(
    cluster_compose: dict[str, Any],
) -> None:
    init = cluster_compose["services"]["cluster-init"]
    assert init["image"] == REDIS_IMAGE and init["restart"] == "no"
    assert init["depends_on"] == {name: {"condition": "service_healthy"} for name in NODES}
    shell, flag, script = init["command"]
    assert (shell, flag) == ("sh", "-c")
    assert "--cluster create " + " ".join(f"{address}:6379" for address in node_addresses(cluster_compose)) in script
    assert "--cluster-replicas 0 --cluster-yes" in script
    assert "cluster_slots_assigned:16384" in script and "cluster_state:ok" in script
    # Compose substitutes $NAME itself: the script's own variables are written $$NAME.
    assert "$" not in script.replace("$$", "")
    as_run = script.replace("$$", "$")
    assert subprocess.run(["sh", "-n", "-c", as_run], capture_output=True).returncode == 0


def test_the_cluster_services_start_from_one_node_with_partitioned_streams(cluster_compose: dict[str, Any]) -> None:
    for name in SERVICES:
        environment = cluster_compose["services"][name]["environment"]
        assert set(environment) <= SETTING_NAMES
        assert urlsplit(environment["REDIS_URL"]).hostname in NODES
        assert int(environment["STREAM_PARTITIONS"]) >= len(NODES)
        assert environment["SESSION_SECRET"].startswith("${SESSION_SECRET:?")  # the published default is refused
    assert PUBLISHED_SESSION_SECRET not in (ROOT / "deploy/compose.cluster.yml").read_text()


@pytest.fixture(scope="module")
def k8s() -> dict[tuple[str, str], dict[str, Any]]:
    """Every object kustomization.yaml applies, by kind and name."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for resource in kustomization["resources"]:
        for manifest in yaml.safe_load_all((K8S / resource).read_text()):
            objects[(manifest["kind"], manifest["metadata"]["name"])] = manifest
    return objects


@pytest.fixture(scope="module")
def secret_keys() -> tuple[str, set[str]]:
    """The Secret's name and keys, as secret.example.yaml documents them."""
    secret = yaml.safe_load((K8S / "secret.example.yaml").read_text())
    return secret["metadata"]["name"], set(secret["stringData"])


def pod_spec(k8s: dict[tuple[str, str], dict[str, Any]], name: str) -> dict[str, Any]:
    spec: dict[str, Any] = k8s[("Deployment", name)]["spec"]["template"]["spec"]
    return spec


def test_kustomization_applies_every_manifest_but_the_example_secret() -> None:
    resources = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert set(resources) == {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}


def test_k8s_deployments_run_their_service_configured_by_the_configmap_and_the_secret(
    k8s: dict[tuple[str, str], dict[str, Any]], secret_keys: tuple[str, set[str]]
) -> None:
    config = k8s[("ConfigMap", "cache-quest")]["data"]
    assert set(config) <= SETTING_NAMES and not {"SESSION_SECRET", "REDIS_URL"} & set(config)
    secret_name, keys = secret_keys
    for name in SERVICES:
        deployment = k8s[("Deployment", name)]["spec"]
        assert "replicas" not in deployment  # the autoscaler owns it
        assert deployment["selector"]["matchLabels"].items() <= deployment["template"]["metadata"]["labels"].items()
        (container,) = pod_spec(k8s, name)["containers"]
        assert container["command"] == ["python", "-m", f"services.{name}"]
        assert container["envFrom"] == [{"configMapRef": {"name": "cache-quest"}}]
        assert {variable["name"] for variable in container["env"]} <= SETTING_NAMES
        from_secret = {
            variable["name"]: variable["valueFrom"]["secretKeyRef"]
            for variable in container["env"]
            if "secretKeyRef" in variable.get("valueFrom", {})
        }
        # The gateway also takes the operators' tokens, when the secret has them.
        assert set(from_secret) == {"SESSION_SECRET", "REDIS_URL", *(["ADMIN_TOKENS"] if name == "gateway" else [])}
        assert all(ref["name"] == secret_name and ref["key"] in keys for ref in from_secret.values())


def test_k8s_pods_outlast_their_drain(k8s: dict[tuple[str, str], dict[str, Any]]) -> None:
    config = k8s[("ConfigMap", "cache-quest")]["data"]
    request_timeout_ms = int(config.get("REQUEST_TIMEOUT_MS", Settings.model_fields["request_timeout_ms"].default))
    for name in SERVICES:
        spec = pod_spec(k8s, name)
        (container,) = spec["containers"]
        pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", ["sleep", "0"])
        assert pre_stop[0] == "sleep"
        assert spec["terminationGracePeriodSeconds"] * 1000 > int(pre_stop[1]) * 1000 + request_timeout_ms


def test_the_k8s_gateway_is_served_and_scaled_on_cpu(k8s: dict[tuple[str, str], dict[str, Any]]) -> None:
    service = k8s[("Service", "gateway")]["spec"]
    labels = k8s[("Deployment", "gateway")]["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= labels.items()
    (container,) = pod_spec(k8s, "gateway")["containers"]
    assert {port["targetPort"] for port in service["ports"]} <= {port["name"] for port in container["ports"]}
    autoscaler = k8s[("HorizontalPodAutoscaler", "gateway")]["spec"]
    assert autoscaler["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "gateway"}
    assert [metric["resource"]["name"] for metric in autoscaler["metrics"]] == ["cpu"]


def test_the_k8s_gateway_is_ready_only_with_redis_and_alive_without_it(
    k8s: dict[tuple[str, str], dict[str, Any]],
) -> None:
    (container,) = pod_spec(k8s, "gateway")["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["livenessProbe"]["httpGet"]["path"] == container["startupProbe"]["httpGet"]["path"] == "/livez"


@pytest.mark.parametrize("probe", ["readinessProbe", "livenessProbe", "startupProbe"])
def test_the_k8s_gateway_probes_are_real_routes(k8s: dict[tuple[str, str], dict[str, Any]], probe: str) -> None:
    (container,) = pod_spec(k8s, "gateway")["containers"]
    assert container[probe]["httpGet"]["path"] in gateway_get_paths()


@pytest.mark.parametrize("route", COMMAND_STREAMS, ids=lambda route: route.group)
def test_keda_scales_each_worker_on_its_group_lag_in_every_partition(
    k8s: dict[tuple[str, str], dict[str, Any]], secret_keys: tuple[str, set[str]], route: CommandStream
) -> None:
    partitions = int(k8s[("ConfigMap", "cache-quest")]["data"]["STREAM_PARTITIONS"])
    scaled = k8s[("ScaledObject", route.group)]["spec"]
    assert scaled["scaleTargetRef"]["name"] == route.group and ("Deployment", route.group) in k8s
    assert scaled["minReplicaCount"] >= 1  # /healthz wants a live consumer in every group
    triggers = scaled["triggers"]
    assert len(triggers) == partitions
    consumed = {(trigger["metadata"]["stream"], trigger["metadata"]["consumerGroup"]) for trigger in triggers}
    assert consumed == partition_streams(route, partitions)
    secret_name, keys = secret_keys
    for trigger in triggers:
        assert trigger["type"] == "redis-cluster-streams" and "lagCount" in trigger["metadata"]
        authentication = k8s[("TriggerAuthentication", trigger["authenticationRef"]["name"])]["spec"]
        assert all(ref["name"] == secret_name and ref["key"] in keys for ref in authentication["secretTargetRef"])
