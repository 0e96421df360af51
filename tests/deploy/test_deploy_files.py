"""The deployment files (deploy/Dockerfile, deploy/compose.yaml, deploy/k8s/) against the code
they run: commands parse with Stopper's own CLI, every STOPPER_* variable is a real setting,
probes hit routes the app serves, ports and mounts line up. No Docker, no cluster."""

from __future__ import annotations

import argparse
import base64
import json
import re
import secrets
import shlex
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import fastapi.routing
import pytest
import yaml
from fastapi.routing import APIRoute
from pydantic import ValidationError

from stopper.api.app import create_app
from stopper.cli import build_parser
from stopper.config import DatabaseSettings, Environment, KafkaSettings, Role, Settings
from stopper.registry import load_registry
from stopper.runtime import build_runtime, callback_secrets
from tests.unit.test_settings import expected_variables

Doc = dict[str, Any]

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
K8S = DEPLOY / "k8s"
PYPROJECT = ROOT / "pyproject.toml"

STOPPER_IMAGE = "stopper:dev"
# What roles api and worker refuse to start without (stopper.config.Settings).
NEEDED_BY_ROLES = ("STOPPER_DATABASE_URL", "STOPPER_KAFKA_BOOTSTRAP")
WORKLOAD_KINDS = {"Deployment", "Job", "StatefulSet", "DaemonSet"}
ROLES = {role.value for role in Role}


# --- reading the files -------------------------------------------------------------------------


def load_yaml(path: Path) -> Doc:
    return cast(Doc, yaml.safe_load(path.read_text()))


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, rest) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    return instructions


def docker_exec_form(instruction: str) -> list[str]:
    """The JSON (exec) form of the last ENTRYPOINT or CMD: a shell form would put `sh -c`
    between the container runtime and Stopper, and signals would not reach it."""
    [*_, rest] = [rest for keyword, rest in dockerfile() if keyword == instruction]
    value = json.loads(rest)
    assert isinstance(value, list) and all(isinstance(a, str) for a in value), rest
    return cast(list[str], value)


def kustomization() -> Doc:
    return load_yaml(K8S / "kustomization.yaml")


def k8s_documents() -> list[Doc]:
    documents: list[Doc] = []
    for name in kustomization()["resources"]:
        documents += [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    return documents


def k8s_named(kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in k8s_documents() if d["kind"] == kind}


def k8s_stopper_image_names() -> set[str]:
    return {image["name"] for image in kustomization().get("images", [])} | {"stopper"}


def image_name(image: str) -> str:
    """`registry/stopper:1.0` -> `registry/stopper` (a port in the registry host is kept)."""
    name, _, tag = image.rpartition(":")
    return name if name and "/" not in tag else image


# --- Stopper containers, wherever they are declared ---------------------------------------------


@dataclass
class Container:
    where: str  # for messages: "compose service api", "Deployment stopper-api"
    name: str  # what it is: "api", "worker", "migrate", "institutions"
    args: list[str]
    env: dict[str, str]
    ports: dict[str, int] = field(default_factory=dict)  # k8s: port name -> containerPort
    spec: Doc = field(default_factory=dict)  # the compose service or the k8s container
    workload: Doc = field(default_factory=dict)  # k8s: the Deployment or Job around it

    def parsed(self) -> argparse.Namespace:
        return parse(self.args, self.where)

    @property
    def listen_port(self) -> int | None:
        """The port `stopper serve` or `stopper simulate` listens on, from its own flags."""
        args = self.parsed()
        port = getattr(args, "port", None)
        return int(port) if port is not None else None


def parse(args: list[str], where: str) -> argparse.Namespace:
    assert all(isinstance(a, str) for a in args), f"{where}: every argument must be a string"
    try:
        return build_parser().parse_args(args)
    except SystemExit as e:
        pytest.fail(f"{where}: `stopper {shlex.join(args)}` does not parse (exit {e.code})")


def compose_environment(service: Doc) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return cast(dict[str, str], env)


def compose_command(service: Doc) -> list[str]:
    command = service.get("command")
    if command is None:
        return docker_exec_form("CMD")
    return shlex.split(command) if isinstance(command, str) else cast(list[str], command)


def compose_stopper_services() -> dict[str, Doc]:
    services = cast(dict[str, Doc], load_yaml(COMPOSE)["services"])
    return {
        name: service
        for name, service in services.items()
        if service.get("image") == STOPPER_IMAGE or "build" in service
    }


def compose_containers() -> list[Container]:
    return [
        Container(
            f"compose service {name}",
            name,
            compose_command(service),
            compose_environment(service),
            spec=service,
        )
        for name, service in compose_stopper_services().items()
    ]


def k8s_env(container: Doc, where: str) -> dict[str, str]:
    config_maps = k8s_named("ConfigMap")
    secrets = k8s_named("Secret")
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            name = source["configMapRef"]["name"]
            assert name in config_maps, f"{where}: no ConfigMap {name}"
            env |= config_maps[name].get("data", {})
        if "secretRef" in source:
            name = source["secretRef"]["name"]
            assert name in secrets, f"{where}: no Secret {name}"
            env |= secret_values(secrets[name])
    for variable in container.get("env", []):
        env[variable["name"]] = variable.get("value", "<from valueFrom>")
    return env


def secret_values(secret: Doc) -> dict[str, str]:
    values = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    return values | (secret.get("stringData") or {})


def k8s_workloads() -> Iterator[tuple[Doc, Doc]]:
    """(workload, container) for every container of every workload."""
    for doc in k8s_documents():
        if doc["kind"] in WORKLOAD_KINDS:
            for container in doc["spec"]["template"]["spec"]["containers"]:
                yield doc, container


def k8s_containers() -> list[Container]:
    containers = []
    for workload, container in k8s_workloads():
        if image_name(container["image"]) not in k8s_stopper_image_names():
            continue
        where = f"{workload['kind']} {workload['metadata']['name']}"
        # The image's ENTRYPOINT is `stopper`; a `command` would replace it.
        assert "command" not in container, f"{where}: use args, keep the image's entrypoint"
        containers.append(
            Container(
                where,
                workload["metadata"]["name"].removeprefix("stopper-"),
                container.get("args") or docker_exec_form("CMD"),
                k8s_env(container, where),
                {
                    p.get("name", str(p["containerPort"])): p["containerPort"]
                    for p in container.get("ports", [])
                },
                container,
                workload,
            )
        )
    return containers


def all_containers() -> list[Container]:
    return compose_containers() + k8s_containers()


def served_paths(role: Role) -> set[str]:
    """The paths Stopper's app answers for a process of `role` (built, not started)."""
    return set(routes(role))


def routes(role: Role) -> dict[str, Any]:
    """Path -> route of Stopper's app for a process of `role` (built, not started)."""
    settings = Settings(
        role=role,
        database=DatabaseSettings(url="postgresql+asyncpg://u@h/db"),
        kafka=KafkaSettings(bootstrap="h:9092"),
    )
    app = create_app(build_runtime(settings), start_runtime=False)
    # Included routers stay nodes of their own in `app.routes` (FastAPI 0.137 and later):
    # iter_route_contexts flattens them, one context per endpoint.
    iterate = getattr(fastapi.routing, "iter_route_contexts", None)
    if iterate is None:  # an older FastAPI copied every included route into app.routes
        return {str(getattr(route, "path", "")): route for route in app.routes}
    return {str(c.path): c.original_route for c in iterate(app.routes)}


def settings_from(env: dict[str, str], role: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings as `stopper serve --role ROLE` builds them in a container with `env`."""
    for variable in expected_variables():
        monkeypatch.delenv(variable, raising=False)
    for variable, value in env.items():
        monkeypatch.setenv(variable, str(value))
    settings = Settings()
    return Settings.model_validate({**settings.model_dump(), "role": role})


# --- commands ------------------------------------------------------------------------------------


def test_there_are_stopper_containers_to_check() -> None:
    assert {c.name for c in compose_containers()} >= {"migrate", "api", "worker", "institutions"}
    assert {c.name for c in k8s_containers()} >= {"migrate", "api", "worker"}


@pytest.mark.parametrize("container", all_containers(), ids=lambda c: c.where)
def test_every_stopper_command_parses_and_serves_the_role_its_name_says(
    container: Container,
) -> None:
    args = container.parsed()
    if args.command == "serve":
        assert args.role == container.name, f"{container.where} serves role {args.role}"
        assert args.host == "0.0.0.0", f"{container.where} must listen beyond loopback"
        assert args.port is not None, f"{container.where}: say the port, the probes depend on it"
    elif container.name in ROLES:
        pytest.fail(f"{container.where} is named for a role but runs `{args.command}`")
    if args.command == "simulate":
        assert args.host == "0.0.0.0", f"{container.where} must listen beyond loopback"


def test_compose_runs_migrations_then_api_workers_and_the_simulation() -> None:
    commands = {c.name: c.parsed() for c in compose_containers()}
    assert commands["migrate"].command == "migrate"
    assert commands["institutions"].command == "simulate"
    services = load_yaml(COMPOSE)["services"]
    for name in ("api", "worker"):
        assert services[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }
        # Workers are scaled with --scale worker=N: no fixed name, no fixed host port.
    assert "container_name" not in services["worker"] and "ports" not in services["worker"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_k8s_job_migrates() -> None:
    [job] = k8s_named("Job").values()
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert parse(container["args"], "Job").command == "migrate"
    assert job["spec"]["template"]["spec"]["restartPolicy"] in {"OnFailure", "Never"}


def test_the_image_runs_the_stopper_console_script() -> None:
    scripts = tomllib.loads(PYPROJECT.read_text())["project"]["scripts"]
    assert docker_exec_form("ENTRYPOINT") == ["stopper"]
    assert scripts["stopper"] == "stopper.cli:main"
    default = parse(docker_exec_form("CMD"), "Dockerfile CMD")
    assert (default.command, default.role, default.host) == ("serve", "all", "0.0.0.0")
    exposed = {
        int(p.split("/")[0]) for k, rest in dockerfile() if k == "EXPOSE" for p in rest.split()
    }
    assert default.port in exposed


def test_the_image_holds_what_the_wheel_is_built_from() -> None:
    project = tomllib.loads(PYPROJECT.read_text())
    wheel = project["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed = {"pyproject.toml", project["project"]["readme"]}
    needed |= set(wheel["packages"]) | set(wheel.get("force-include", {}))
    copied: set[str] = set()
    for keyword, rest in dockerfile():
        if keyword == "COPY" and not rest.startswith("--from"):
            *sources, _destination = rest.split()
            copied |= {s.rstrip("/").removeprefix("./") for s in sources}
    assert needed <= copied, f"the Dockerfile does not copy {sorted(needed - copied)}"
    assert all((ROOT / path).exists() for path in copied), "COPY sources are relative to the root"
    installs = [
        rest for keyword, rest in dockerfile() if keyword == "RUN" and "pip install" in rest
    ]
    assert any(re.search(r"pip install [^&]*\s\.(\s|$)", rest) for rest in installs), installs
    [base] = [rest for keyword, rest in dockerfile() if keyword == "FROM"]
    assert base.startswith("python:3.11"), base


def test_the_image_runs_as_the_non_root_user_kubernetes_expects() -> None:
    [*_, user] = [rest for keyword, rest in dockerfile() if keyword == "USER"]
    uid, _, gid = user.partition(":")
    # Numeric, or Kubernetes' runAsNonRoot cannot verify it.
    assert uid.isdigit() and int(uid) != 0, user
    for workload, container in k8s_workloads():
        pod = workload["spec"]["template"]["spec"].get("securityContext", {})
        own = container.get("securityContext", {})
        context = pod | own
        assert context.get("runAsNonRoot") is True, workload["metadata"]["name"]
        assert context.get("runAsUser", int(uid)) == int(uid), workload["metadata"]["name"]
        if gid:
            assert context.get("runAsGroup", int(gid)) == int(gid), workload["metadata"]["name"]


def test_compose_builds_the_image_from_the_repository_root() -> None:
    for name, service in compose_stopper_services().items():
        assert service["image"] == STOPPER_IMAGE, name
        build = service["build"]
        context = (COMPOSE.parent / build["context"]).resolve()
        assert context == ROOT, name
        assert (context / build["dockerfile"]).resolve() == DOCKERFILE, name


# --- settings ------------------------------------------------------------------------------------


def test_every_stopper_variable_set_is_a_real_setting() -> None:
    real = expected_variables()
    set_anywhere: dict[str, set[str]] = {}
    for container in all_containers():
        for variable in container.env:
            if variable.startswith("STOPPER_"):
                set_anywhere.setdefault(variable, set()).add(container.where)
    for kind in ("ConfigMap", "Secret"):
        for name, doc in k8s_named(kind).items():
            values = doc.get("data", {}) if kind == "ConfigMap" else secret_values(doc)
            for variable in values:
                # A typo like STOPER_... would be ignored silently by Stopper.
                assert variable.startswith("STOPPER_"), f"{kind} {name}: {variable}"
                set_anywhere.setdefault(variable, set()).add(f"{kind} {name}")
    unknown = {v: sorted(where) for v, where in set_anywhere.items() if v not in real}
    assert not unknown, f"not settings of stopper/config/: {unknown}"


def test_values_are_strings() -> None:
    """Kubernetes rejects non-string ConfigMap values; compose would turn a YAML `true` into
    `True`. Quote them."""
    for container in compose_containers():
        for variable, value in container.env.items():
            assert isinstance(value, str), f"{container.where}: {variable}={value!r}"
    for kind in ("ConfigMap", "Secret"):
        for name, doc in k8s_named(kind).items():
            for key in ("data", "stringData"):
                for variable, value in (doc.get(key) or {}).items():
                    assert isinstance(value, str), f"{kind} {name}: {variable}={value!r}"


@pytest.mark.parametrize("container", all_containers(), ids=lambda c: c.where)
def test_every_stopper_container_has_the_servers_the_roles_need(container: Container) -> None:
    for variable in NEEDED_BY_ROLES:
        assert container.env.get(variable), f"{container.where} lacks {variable}"
    assert container.env["STOPPER_DATABASE_URL"].startswith("postgresql+asyncpg://")


@pytest.mark.parametrize("role", ["api", "worker"])
def test_compose_settings_start_each_role(role: str, monkeypatch: pytest.MonkeyPatch) -> None:
    [container] = [c for c in compose_containers() if c.name == role]
    settings = settings_from(container.env, container.parsed().role, monkeypatch)
    assert settings.role is Role(role)
    assert not settings.database.is_embedded and settings.kafka.bootstrap
    # Stopper resolves a callback secret for every institution at start-up; compose runs the
    # simulated world with the development secrets, or must provide them all.
    registry = load_registry(settings.registry_path)
    assert set(callback_secrets(settings, registry)) == {
        i.callback_secret_ref for i in registry.values()
    }


def filled_in(env: dict[str, str]) -> dict[str, str]:
    """`env` with the Secret's placeholders replaced as the README asks: a real database
    password and a callback secret for every institution of the registry."""
    url = urlsplit(env["STOPPER_DATABASE_URL"])
    assert url.password, "the database URL shows where the password goes"
    netloc = url.netloc.replace(f":{url.password}@", f":{secrets.token_urlsafe(24)}@")
    registry = load_registry(
        Path(env["STOPPER_REGISTRY_PATH"]) if env.get("STOPPER_REGISTRY_PATH") else None
    )
    refs = {i.callback_secret_ref for i in registry.values()}
    return env | {
        "STOPPER_DATABASE_URL": url._replace(netloc=netloc).geturl(),
        "STOPPER_INSTITUTIONS_CALLBACK_SECRETS": json.dumps(
            {ref: secrets.token_urlsafe(32) for ref in sorted(refs)}
        ),
    }


@pytest.mark.parametrize("role", ["api", "worker", "migrate"])
def test_k8s_placeholders_keep_production_from_starting(
    role: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Applied unchanged, the manifests must not run production on example secrets."""
    [container] = [c for c in k8s_containers() if c.name == role]
    assert container.env["STOPPER_ENVIRONMENT"] == Environment.PRODUCTION.value
    with pytest.raises(ValidationError, match="placeholder"):
        settings_from(
            container.env, getattr(container.parsed(), "role", None) or "all", monkeypatch
        )


@pytest.mark.parametrize("role", ["api", "worker"])
def test_k8s_settings_start_each_role_once_the_secrets_are_filled_in(
    role: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    [container] = [c for c in k8s_containers() if c.name == role]
    settings = settings_from(filled_in(container.env), container.parsed().role, monkeypatch)
    assert settings.role is Role(role)
    assert settings.environment is Environment.PRODUCTION and settings.keys_required
    registry = load_registry(settings.registry_path)
    assert set(callback_secrets(settings, registry)) == {
        i.callback_secret_ref for i in registry.values()
    }


def test_k8s_job_settings_load_once_the_secrets_are_filled_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    [container] = [c for c in k8s_containers() if c.name == "migrate"]
    settings = settings_from(filled_in(container.env), "all", monkeypatch)
    assert not settings.database.is_embedded


def test_compose_urls_name_services_and_their_ports() -> None:
    """Every host a Stopper container is pointed at is a compose service, on the port that
    service listens on."""
    services = load_yaml(COMPOSE)["services"]
    listening = {c.name: c.listen_port for c in compose_containers()}
    for container in compose_containers():
        urls = dict(container.env)
        if container.parsed().command == "simulate":
            urls["--stopper-url"] = container.parsed().stopper_url
        for variable, value in urls.items():
            if not value or not variable.endswith(("_URL", "_BOOTSTRAP", "--stopper-url")):
                continue
            for address in value.split(","):
                parts = urlsplit(address if "://" in address else f"//{address}")
                assert parts.hostname in services, f"{container.where}: {variable}={value}"
                expected = listening.get(parts.hostname or "")
                if expected is not None:
                    assert parts.port == expected, f"{container.where}: {variable}={value}"


# --- probes and ports ----------------------------------------------------------------------------


def resolve_port(container: Container, port: int | str) -> int:
    if isinstance(port, int):
        return port
    if port.isdigit():
        return int(port)
    assert port in container.ports, f"{container.where}: no container port named {port}"
    return container.ports[port]


def k8s_serving_containers() -> list[Container]:
    return [c for c in k8s_containers() if c.parsed().command == "serve"]


@pytest.mark.parametrize("container", k8s_serving_containers(), ids=lambda c: c.where)
def test_probes_hit_what_the_app_serves_on_its_port(container: Container) -> None:
    role = Role(container.parsed().role)
    paths = served_paths(role)
    port = container.listen_port
    assert port in container.ports.values(), f"{container.where}: containerPort != --port"
    probes = {k: v for k, v in container.spec.items() if k.endswith("Probe")}
    assert probes["livenessProbe"]["httpGet"]["path"] == "/healthz", container.where
    assert probes["readinessProbe"]["httpGet"]["path"] == "/readyz", container.where
    for kind, probe in probes.items():
        get = probe["httpGet"]
        assert get["path"] in paths, f"{container.where} {kind}: {get['path']} is not served"
        assert resolve_port(container, get["port"]) == port, f"{container.where} {kind}"
        # Production requires API keys; the kubelet (and Prometheus) present none.
        route = routes(role)[get["path"]]
        assert not isinstance(route, APIRoute) or not route.dependant.dependencies, (
            f"{container.where} {kind}: {get['path']} asks for a key"
        )


@pytest.mark.parametrize("container", k8s_serving_containers(), ids=lambda c: c.where)
def test_prometheus_annotations_name_the_metrics_endpoint(container: Container) -> None:
    annotations = container.workload["spec"]["template"]["metadata"].get("annotations", {})
    assert annotations.get("prometheus.io/scrape") == "true", container.where
    assert int(annotations["prometheus.io/port"]) == container.listen_port, container.where
    path = annotations.get("prometheus.io/path", "/metrics")
    served = routes(Role(container.parsed().role))
    assert path in served, container.where
    route = served[path]
    assert not isinstance(route, APIRoute) or not route.dependant.dependencies, container.where


def test_the_api_service_reaches_the_api_pods() -> None:
    service = k8s_named("Service")["stopper-api"]
    deployment = k8s_named("Deployment")["stopper-api"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    [api] = [c for c in k8s_containers() if c.name == "api"]
    [port] = service["spec"]["ports"]
    assert port["port"] == 80
    assert resolve_port(api, port["targetPort"]) == api.listen_port
    # Nothing else matches the selector: workers do not answer the API.
    for name, other in k8s_named("Deployment").items():
        if name != "stopper-api":
            other_labels = other["spec"]["template"]["metadata"]["labels"]
            assert not service["spec"]["selector"].items() <= other_labels.items(), name


def test_deployments_select_their_own_pods() -> None:
    for deployment in k8s_named("Deployment").values():
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    for name, budget in k8s_named("PodDisruptionBudget").items():
        assert name in k8s_named("Deployment"), name
        assert (
            budget["spec"]["selector"]["matchLabels"]
            == (k8s_named("Deployment")[name]["spec"]["selector"]["matchLabels"])
        )


def test_compose_publishes_the_port_the_api_serves_and_health_checks_it() -> None:
    [api] = [c for c in compose_containers() if c.name == "api"]
    published = []
    for port in api.spec["ports"]:
        if isinstance(port, dict):
            published.append(int(port["target"]))
        else:
            published.append(int(str(port).rsplit(":", 1)[-1].split("/")[0]))
    assert published == [api.listen_port]
    for container in compose_containers():
        if "healthcheck" not in container.spec:
            continue
        test = container.spec["healthcheck"]["test"]
        text = test if isinstance(test, str) else " ".join(test)
        [url] = re.findall(r"https?://[^\s'\"]+", text)
        parts = urlsplit(url)
        assert parts.port == container.listen_port, container.where
        if container.parsed().command == "serve":
            assert parts.path in served_paths(Role(container.parsed().role)), container.where


def test_every_workload_has_resources() -> None:
    for workload, container in k8s_workloads():
        where = f"{workload['kind']} {workload['metadata']['name']}"
        resources = container.get("resources", {})
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources.get(bound, {})), f"{where}: {bound}"


def test_deployments_are_replicated_and_protected() -> None:
    deployments = k8s_named("Deployment")
    assert set(deployments) == {"stopper-api", "stopper-worker"}
    for name, deployment in deployments.items():
        assert deployment["spec"]["replicas"] >= 2, name


# --- the kustomization ---------------------------------------------------------------------------


def test_kustomization_lists_every_manifest_and_only_existing_ones() -> None:
    listed = kustomization()["resources"]
    assert len(listed) == len(set(listed))
    missing = [name for name in listed if not (K8S / name).is_file()]
    assert not missing, missing
    on_disk = {p.name for p in K8S.glob("*.y*ml")} - {"kustomization.yaml"}
    assert on_disk == set(listed), on_disk ^ set(listed)


def test_everything_lives_in_the_stopper_namespace() -> None:
    assert kustomization()["namespace"] == "stopper"
    assert "stopper" in k8s_named("Namespace")
    for doc in k8s_documents():
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace", "stopper") == "stopper", doc["metadata"]


def test_the_secret_is_stringdata_and_holds_what_is_secret() -> None:
    [secret] = k8s_named("Secret").values()
    assert secret["metadata"]["name"] == "stopper-secrets"
    assert set(secret["stringData"]) >= {
        "STOPPER_DATABASE_URL",
        "STOPPER_INSTITUTIONS_CALLBACK_SECRETS",
    }
    json.loads(secret["stringData"]["STOPPER_INSTITUTIONS_CALLBACK_SECRETS"])
    config = k8s_named("ConfigMap")["stopper-config"]["data"]
    assert not {"STOPPER_DATABASE_URL", "STOPPER_INSTITUTIONS_CALLBACK_SECRETS"} & set(config)


# --- Prometheus and Grafana in compose -----------------------------------------------------------


def mounts(service: Doc) -> dict[str, Path]:
    """Container path -> host path (relative to the compose file) of the bind mounts."""
    found: dict[str, Path] = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            source, target = volume.get("source", ""), volume["target"]
        else:
            source, target = str(volume).split(":")[:2]
        if source.startswith((".", "/")):
            found[target] = (COMPOSE.parent / source).resolve()
    return found


def test_prometheus_mounts_its_configuration_and_scrapes_stopper() -> None:
    services = load_yaml(COMPOSE)["services"]
    folder = mounts(services["prometheus"])["/etc/prometheus"]
    config = load_yaml(folder / "prometheus.yml")
    for rules in config.get("rule_files", []):
        assert (folder / rules).is_file(), rules
    listening = {c.name: c.listen_port for c in compose_containers()}
    targets: list[tuple[str, int]] = []
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, _, port = target.rpartition(":")
                targets.append((host, int(port)))
        for dns in job.get("dns_sd_configs", []):
            targets += [(name, int(dns["port"])) for name in dns["names"]]
    assert {host for host, _ in targets} >= {"api", "worker"}
    for host, port in targets:
        assert host in services, host
        assert listening.get(host) == port, (host, port)


def test_grafana_mounts_folders_that_exist_where_provisioning_looks() -> None:
    services = load_yaml(COMPOSE)["services"]
    grafana = mounts(services["grafana"])
    provisioning = grafana["/etc/grafana/provisioning"]
    assert provisioning.is_dir() and (provisioning / "datasources").is_dir()
    providers = [
        provider
        for file in sorted((provisioning / "dashboards").glob("*.y*ml"))
        for provider in load_yaml(file).get("providers", [])
    ]
    assert providers
    for provider in providers:
        path = provider["options"]["path"]
        assert path in grafana, f"Grafana reads dashboards from {path}; compose mounts none there"
        assert any(grafana[path].glob("*.json")), grafana[path]
    for file in sorted((provisioning / "datasources").glob("*.y*ml")):
        for source in load_yaml(file).get("datasources", []):
            parts = urlsplit(source["url"])
            assert parts.hostname in services, source["url"]
