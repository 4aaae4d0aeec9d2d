"""Deployment files agree with each other and with the Dockerfile; no Docker engine needed.

Checks the Dockerfile's shape (ARG BASE_IMAGE, non-root USER, exec-form CMD, curl-free
HEALTHCHECK), validates compose.yaml against the Compose Specification's schema and every
Kubernetes document against the API's schemas (strict: unknown fields fail), then
cross-checks ports, probe paths, image names, the uid, volumes and the shared PVC.
"""

from __future__ import annotations

import importlib.resources
import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.config import Settings
from service.http import create_app
from service.server import gunicorn_options

ROOT = Path(__file__).resolve().parents[1]
K8S_DIR = ROOT / "deploy" / "kubernetes"
# Kubernetes releases the manifests must be valid for: the oldest still common, and the newest.
K8S_VERSIONS = ("1.29.0", "1.33.0")
EXPECTED_KINDS = {
    "Deployment": "apps/v1",
    "Service": "v1",
    "HorizontalPodAutoscaler": "autoscaling/v2",
    "CronJob": "batch/v1",
    "PersistentVolumeClaim": "v1",
}


# -- Dockerfile ---------------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # Docker drops comment lines inside a continued instruction too
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    assert not pending, "Dockerfile ends inside a continued instruction"
    return instructions


def env_pairs(args: str) -> dict[str, str]:
    """The variables of one ``ENV a=1 b=2`` instruction."""
    pairs = {}
    for word in shlex.split(args):
        name, sep, value = word.partition("=")
        assert sep, f"ENV {args!r}: use the name=value form"
        pairs[name] = value
    return pairs


class Dockerfile:
    """Facts of the Dockerfile's final (runtime) stage that the other files must agree with."""

    def __init__(self, text: str) -> None:
        self.instructions = dockerfile_instructions(text)
        kinds = [kind for kind, _ in self.instructions]
        last_from = len(kinds) - 1 - kinds[::-1].index("FROM")
        self.runtime = self.instructions[last_from:]
        self.env: dict[str, str] = {}
        for kind, args in self.runtime:
            if kind == "ENV":
                self.env.update(env_pairs(args))

    def runtime_args(self, kind: str) -> list[str]:
        return [args for k, args in self.runtime if k == kind]

    def only(self, kind: str) -> str:
        found = self.runtime_args(kind)
        assert len(found) == 1, f"expected one {kind} in the runtime stage, got {found}"
        return found[0]

    @property
    def uid(self) -> int:
        return int(self.only("USER").split(":")[0])

    @property
    def port(self) -> int:
        return int(self.only("EXPOSE").split("/")[0])

    @property
    def cmd(self) -> list[str]:
        return json.loads(self.only("CMD"))

    @property
    def healthcheck_command(self) -> list[str]:
        args = self.only("HEALTHCHECK")
        _options, _, command = args.partition("CMD ")
        return json.loads(command)

    @property
    def volumes(self) -> list[str]:
        return [v for args in self.runtime_args("VOLUME") for v in json_or_words(args)]


def json_or_words(args: str) -> list[str]:
    return json.loads(args) if args.startswith("[") else args.split()


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return Dockerfile((ROOT / "Dockerfile").read_text())


def test_every_stage_builds_from_the_base_image_argument(dockerfile: Dockerfile) -> None:
    kinds = [kind for kind, _ in dockerfile.instructions]
    first_from = kinds.index("FROM")
    args_before = [a for k, a in dockerfile.instructions[:first_from] if k == "ARG"]
    assert "BASE_IMAGE=python:3.12-slim" in args_before
    froms = [args for kind, args in dockerfile.instructions if kind == "FROM"]
    assert len(froms) >= 2, "expected a build stage and a runtime stage"
    for args in froms:
        assert args.split()[0] == "${BASE_IMAGE}", f"FROM {args} does not use ${{BASE_IMAGE}}"


def test_dependencies_are_installed_before_the_source_is_copied(dockerfile: Dockerfile) -> None:
    build = dockerfile.instructions[: dockerfile.instructions.index(dockerfile.runtime[0])]
    copies = [i for i, (kind, _) in enumerate(build) if kind == "COPY"]
    first_copy = build[copies[0]][1].split()
    assert first_copy[:-1] == ["pyproject.toml"], "the first COPY should bring pyproject.toml only"
    installs = [i for i, (k, a) in enumerate(build) if k == "RUN" and "pip" in a and "install" in a]
    assert installs and installs[0] < copies[1], "dependencies must be installed before the code"
    runtime_copies = dockerfile.runtime_args("COPY")
    assert runtime_copies and all(c.startswith("--from=") for c in runtime_copies), (
        "the runtime stage copies only from the build stage"
    )


def test_dockerfile_uses_only_python_and_venv(dockerfile: Dockerfile) -> None:
    commands = " ".join(args for kind, args in dockerfile.instructions if kind == "RUN")
    for tool in ("apt-get", "apt ", "apk ", "curl", "wget"):
        assert tool not in commands, f"RUN uses {tool.strip()!r}"
    assert "python3 -m venv" in commands


def test_runs_as_a_fixed_non_root_user(dockerfile: Dockerfile) -> None:
    assert dockerfile.uid > 0
    assert dockerfile.only("USER") == f"{dockerfile.uid}:{dockerfile.uid}"


def test_cmd_is_exec_form_sgdserve_serve(dockerfile: Dockerfile) -> None:
    assert dockerfile.cmd == ["sgdserve", "serve"]
    assert not dockerfile.runtime_args("ENTRYPOINT"), "an ENTRYPOINT would wrap the CMD"


def test_healthcheck_uses_python_on_the_configured_port(dockerfile: Dockerfile) -> None:
    command = dockerfile.healthcheck_command
    assert command[0] == "python3"
    code = " ".join(command)
    assert "curl" not in code and "wget" not in code
    assert "urllib.request" in code and "SGDSERVE_PORT" in code and "/ready" in code


def test_env_defaults_listen_everywhere_on_the_exposed_port(dockerfile: Dockerfile) -> None:
    env = dockerfile.env
    assert env["SGDSERVE_HOST"] == "0.0.0.0"
    assert int(env["SGDSERVE_PORT"]) == dockerfile.port == 8000
    assert env["PYTHONUNBUFFERED"] == "1" and env["PYTHONDONTWRITEBYTECODE"] == "1"
    # Each value must be one Settings accepts, under a name Settings reads.
    sgdserve = {k: v for k, v in env.items() if k.startswith("SGDSERVE_")}
    fields = {"SGDSERVE_" + name.upper() for name in Settings.__dataclass_fields__}
    assert set(sgdserve) <= fields, f"unknown settings: {sorted(set(sgdserve) - fields)}"
    settings = Settings.from_env(sgdserve)
    assert settings.port == dockerfile.port


def test_models_are_trained_before_the_volume_is_declared(dockerfile: Dockerfile) -> None:
    model_dir = dockerfile.env["SGDSERVE_MODEL_DIR"]
    assert dockerfile.volumes == [model_dir, dockerfile.env["SGDSERVE_LOG_DIR"]]
    kinds = [kind for kind, _ in dockerfile.runtime]
    train = [i for i, (k, a) in enumerate(dockerfile.runtime) if k == "RUN" and " train" in a]
    assert train, "the image should train the default model at build time"
    # Docker discards changes a build step makes to a declared volume.
    assert train[-1] < kinds.index("VOLUME")


def test_dockerignore_keeps_the_context_to_the_package() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "start from nothing, then allow what the image needs"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    # README.md is the wheel's long description (pyproject's `readme`).
    assert allowed == {"pyproject.toml", "README.md", "service"}
    assert "**/__pycache__" in lines


# -- compose.yaml -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_compose_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    pytest.importorskip("check_jsonschema", reason="check-jsonschema ships the Compose schema")
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads((vendor / "compose-spec.json").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []
    broken = {**compose, "servcies": {}}  # the schema refuses unknown top-level keys
    assert list(validator.iter_errors(broken))


def duration_seconds(text: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+)([hms])", text)
    assert "".join(n + u for n, u in parts) == text, f"unsupported duration {text!r}"
    return sum(int(n) * units[u] for n, u in parts)


def graceful_timeout() -> float:
    """Gunicorn's graceful_timeout under the default settings (what the image runs with)."""
    return float(gunicorn_options(Settings.from_env({}))["graceful_timeout"])


def test_compose_api_and_scheduler_share_the_models_volume(
    compose: dict[str, Any], dockerfile: Dockerfile
) -> None:
    services = compose["services"]
    assert set(services) == {"api", "scheduler"}
    api, scheduler = services["api"], services["scheduler"]
    assert api["image"] == scheduler["image"] == "sgdserve:latest"
    model_dir = dockerfile.env["SGDSERVE_MODEL_DIR"]
    for service in (api, scheduler):
        assert f"models:{model_dir}" in service["volumes"]
        # Compose's default is 10 s, after which in-flight requests would be killed.
        assert duration_seconds(service["stop_grace_period"]) > graceful_timeout()
    assert "models" in compose["volumes"]
    host, _, container = api["ports"][0].rpartition(":")
    assert int(container) == dockerfile.port
    # The token comes from the environment or .env, never a literal in the file.
    assert re.fullmatch(r"\$\{SGDSERVE_API_TOKEN(:-)?\}", api["environment"]["SGDSERVE_API_TOKEN"])


def test_compose_scheduler_reads_data_from_a_mounted_path(compose: dict[str, Any]) -> None:
    scheduler = compose["services"]["scheduler"]
    command = scheduler["command"]
    assert command[:2] == ["sgdserve", "schedule"]
    data = command[command.index("--data") + 1]
    assert command[command.index("--target") + 1] == "price"
    assert "--every" in command or "--cron" in command
    mounts = [volume.split(":")[1] for volume in scheduler["volumes"]]
    assert any(data.startswith(mount.rstrip("/") + "/") for mount in mounts), (
        f"{data} is not under a mounted volume {mounts}"
    )
    # The image's HEALTHCHECK probes HTTP, which the scheduler does not serve.
    assert scheduler["healthcheck"] == {"disable": True}


# -- Kubernetes ---------------------------------------------------------------------------------


def k8s_documents() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(K8S_DIR.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document is not None:
                yield path.name, document


@pytest.fixture(scope="module")
def k8s() -> dict[str, list[dict[str, Any]]]:
    """Kubernetes objects by kind."""
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for _, document in k8s_documents():
        by_kind.setdefault(document["kind"], []).append(document)
    return by_kind


def one(k8s: dict[str, list[dict[str, Any]]], kind: str) -> dict[str, Any]:
    assert len(k8s[kind]) == 1, f"expected one {kind}"
    return k8s[kind][0]


def pvc_named(k8s: dict[str, list[dict[str, Any]]], name: str) -> dict[str, Any]:
    found = [p for p in k8s["PersistentVolumeClaim"] if p["metadata"]["name"] == name]
    assert len(found) == 1, f"PersistentVolumeClaim {name!r} is not defined"
    return found[0]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_are_valid_kubernetes_objects(version: str) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    documents = list(k8s_documents())
    assert documents, f"no manifests in {K8S_DIR}"
    for name, document in documents:
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{name}: {document['kind']} is not valid for {version}: {error}")
    # Strict validation refuses a misspelt field, so a typo cannot pass silently.
    deployment = next(d for _, d in documents if d["kind"] == "Deployment")
    container = dict(deployment["spec"]["template"]["spec"]["containers"][0])
    container["readinessProbes"] = container.pop("readinessProbe")
    typo = {
        **deployment,
        "spec": {
            **deployment["spec"],
            "template": {
                **deployment["spec"]["template"],
                "spec": {**deployment["spec"]["template"]["spec"], "containers": [container]},
            },
        },
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, version, strict=True)


def test_kinds_and_api_versions(k8s: dict[str, list[dict[str, Any]]]) -> None:
    assert set(k8s) == set(EXPECTED_KINDS)
    for kind, api_version in EXPECTED_KINDS.items():
        assert {d["apiVersion"] for d in k8s[kind]} == {api_version}


def pod_specs(k8s: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    deployment, cronjob = one(k8s, "Deployment"), one(k8s, "CronJob")
    return {
        "Deployment": deployment["spec"]["template"]["spec"],
        "CronJob": cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"],
    }


def named_port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    found = [p["containerPort"] for p in container["ports"] if p.get("name") == port]
    assert found, f"port name {port!r} is not declared by the container"
    return found[0]


def test_deployment_ports_and_probes_agree_with_the_image(
    k8s: dict[str, list[dict[str, Any]]], dockerfile: Dockerfile
) -> None:
    deployment = one(k8s, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert [p["containerPort"] for p in container["ports"]] == [dockerfile.port]
    env = {e["name"]: e for e in container["env"]}
    assert int(env.get("SGDSERVE_PORT", {"value": dockerfile.env["SGDSERVE_PORT"]})["value"]) == (
        dockerfile.port
    )
    probes = {
        name: container[name]
        for name in ("livenessProbe", "readinessProbe", "startupProbe")
        if name in container
    }
    assert probes["livenessProbe"]["httpGet"]["path"] == "/health"
    assert probes["readinessProbe"]["httpGet"]["path"] == "/ready"
    for name, probe in probes.items():
        assert named_port(container, probe["httpGet"]["port"]) == dockerfile.port, name


def test_probe_paths_are_routes_of_the_app(
    k8s: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    app = create_app({"model_dir": tmp_path})
    routes = {rule.rule for rule in app.url_map.iter_rules() if "GET" in rule.methods}
    (container,) = one(k8s, "Deployment")["spec"]["template"]["spec"]["containers"]
    for name in ("livenessProbe", "readinessProbe", "startupProbe"):
        if name in container:
            assert container[name]["httpGet"]["path"] in routes, name


def test_deployment_resources_secret_and_settings(
    k8s: dict[str, list[dict[str, Any]]],
) -> None:
    (container,) = one(k8s, "Deployment")["spec"]["template"]["spec"]["containers"]
    for bound in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][bound]), bound
    env = {e["name"]: e for e in container["env"]}
    fields = {"SGDSERVE_" + name.upper() for name in Settings.__dataclass_fields__}
    assert set(env) <= fields, f"unknown settings: {sorted(set(env) - fields)}"
    token = env["SGDSERVE_API_TOKEN"]
    assert "value" not in token, "the API token must come from a Secret"
    ref = token["valueFrom"]["secretKeyRef"]
    # No Secret with real data is committed; the docs say how to create this one.
    assert "Secret" not in k8s
    docs = (ROOT / "docs" / "deployment.md").read_text()
    assert f"kubectl create secret generic {ref['name']} --from-literal={ref['key']}=" in docs


def test_termination_grace_outlasts_gunicorn_graceful_timeout(
    k8s: dict[str, list[dict[str, Any]]],
) -> None:
    spec = one(k8s, "Deployment")["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command")
    pre_stop_seconds = float(pre_stop[1]) if pre_stop and pre_stop[0] == "sleep" else 0.0
    assert spec["terminationGracePeriodSeconds"] > pre_stop_seconds + graceful_timeout()


def test_pods_run_as_the_image_user_on_a_read_only_root(
    k8s: dict[str, list[dict[str, Any]]], dockerfile: Dockerfile
) -> None:
    for kind, spec in pod_specs(k8s).items():
        pod_security = spec["securityContext"]
        assert pod_security["runAsNonRoot"] is True, kind
        assert pod_security["runAsUser"] == dockerfile.uid, kind
        temporary = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        for container in spec["containers"]:
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, kind
            assert security["readOnlyRootFilesystem"] is True, kind
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts.get("/tmp") in temporary, f"{kind}: /tmp must be writable"


def test_deployment_and_cronjob_share_the_models_pvc(
    k8s: dict[str, list[dict[str, Any]]], dockerfile: Dockerfile
) -> None:
    model_dir = dockerfile.env["SGDSERVE_MODEL_DIR"]
    images, claims = set(), set()
    for spec in pod_specs(k8s).values():
        volumes = {v["name"]: v for v in spec["volumes"]}
        (container,) = spec["containers"]
        images.add(container["image"])
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        volume = volumes[mounts[model_dir]["name"]]
        claims.add(volume["persistentVolumeClaim"]["claimName"])
        for v in spec["volumes"]:
            if "persistentVolumeClaim" in v:
                pvc_named(k8s, v["persistentVolumeClaim"]["claimName"])  # every claim exists
    assert images == {"sgdserve:latest"}
    (claim,) = claims
    assert pvc_named(k8s, claim)["spec"]["accessModes"] == ["ReadWriteMany"]


def test_cronjob_trains_from_mounted_data_one_run_at_a_time(
    k8s: dict[str, list[dict[str, Any]]],
) -> None:
    cronjob = one(k8s, "CronJob")
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    spec = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    command = container["command"] + container.get("args", [])
    assert command[:2] == ["sgdserve", "train"]
    assert command[command.index("--target") + 1] == "price"
    data = command[command.index("--data") + 1]
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    assert any(data.startswith(mount.rstrip("/") + "/") for mount in mounts), (
        f"{data} is not under a mounted volume {mounts}"
    )


def test_service_and_hpa_target_the_deployment(
    k8s: dict[str, list[dict[str, Any]]], dockerfile: Dockerfile
) -> None:
    deployment, service, hpa = (
        one(k8s, kind) for kind in ("Deployment", "Service", "HorizontalPodAutoscaler")
    )
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    (port,) = service["spec"]["ports"]
    assert named_port(container, port["targetPort"]) == dockerfile.port
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        deployment["apiVersion"],
        "Deployment",
        deployment["metadata"]["name"],
    )
    assert hpa["spec"]["minReplicas"] == deployment["spec"]["replicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    # CPU utilisation is a share of the request, so the pods must request CPU.
    assert "cpu" in container["resources"]["requests"]
