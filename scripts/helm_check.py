"""The checks of scripts/helm (run it, not this file: it brings the pinned tools).

Every check prints one line, `ok` or `FAIL`, and the last line counts them; the exit status is
1 when any failed. The tools are the real ones: Helm's Go SDK (helm-python-sdk) lints and
renders the chart and applies values.schema.json, kubernetes-validate holds Kubernetes' own
JSON schemas, `dockerfile` is BuildKit's parser and hadolint lints the Dockerfile.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any, Callable

import dockerfile
import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate import utils as kv_utils

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "coachflow"
SERVER_CRATE = ROOT / "crates" / "coachflow-server"
RELEASE = "coachflow"
NAMESPACE = "coachflow"

# The Kubernetes release whose schemas every manifest must satisfy: the newest that
# kubernetes-validate 1.37.0 ships (strict: unknown fields are errors).
KUBE_VERSION = "1.37.0"

# Not in Kubernetes' own schemas, so kubernetes-validate cannot judge it: the Prometheus
# Operator's CRD. It is the only kind let through unvalidated; check_service_monitor() below
# checks it against the metrics Service instead.
UNVALIDATED_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}

# Settings the chart sets itself, from Secrets or the pod, never from `config`.
CHART_MANAGED = {
    "database.url": "Secret database.existingSecret (env COACHFLOW_DATABASE_URL)",
    "broker.url": "Secret broker.existingSecret (env COACHFLOW_BROKER_URL)",
    "content.kek": "Secret content.existingSecret (env COACHFLOW_CONTENT_KEK)",
    "instance_id": "the pod's name (env COACHFLOW_INSTANCE_ID)",
    "server.tls.cert": "Secret tls.existingSecret, mounted",
    "server.tls.key": "Secret tls.existingSecret, mounted",
    "server.tls.client_ca": "Secret tls.clientCA.existingSecret, mounted",
}

# What the dashboard must show (the chart's brief): requests by method and code, latency from
# the histogram, timers pending and fired, outbox backlog and relay lag, engagements by state.
DASHBOARD_REQUIRED = {
    "coachflow_grpc_requests_total", "coachflow_grpc_request_duration_seconds",
    "coachflow_pending_timers", "coachflow_timers_fired_total", "coachflow_outbox_backlog",
    "coachflow_relay_lag_seconds", "coachflow_engagements",
}

# What gcr.io/distroless/cc-debian12 provides: glibc, libgcc_s, libstdc++, OpenSSL 3.
DISTROLESS_CC_LIBS = {
    "libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2", "librt.so.1",
    "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1", "libgcc_s.so.1", "libstdc++.so.6",
    "libssl.so.3", "libcrypto.so.3",
}
DEBIAN_MAJOR = {"bullseye": 11, "bookworm": 12, "trixie": 13}


class Report:
    def __init__(self) -> None:
        self.passed = 0
        self.failed: list[str] = []

    def section(self, title: str) -> None:
        print(f"\n==> {title}")

    def check(self, condition: bool, message: str, detail: str = "") -> bool:
        if condition:
            self.passed += 1
            print(f"ok    {message}")
        else:
            self.failed.append(message)
            print(f"FAIL  {message}" + (f"\n      {detail}" if detail else ""))
        return condition

    def note(self, message: str) -> None:
        print(f"note  {message}")


report = Report()
check = report.check


# --- the service's own definitions ------------------------------------------------------------

def env_name(path: str) -> str:
    """config.rs env_name(): `database.max_connections` -> COACHFLOW_DATABASE_MAX_CONNECTIONS."""
    return "COACHFLOW_" + path.replace(".", "_").upper()


def rust_settings() -> set[str]:
    """The setting paths of crates/coachflow-server/src/config.rs: the fields of `Config`,
    recursing into the structs of this file that fields name."""
    text = (SERVER_CRATE / "src" / "process" / "config.rs").read_text()
    structs: dict[str, list[tuple[str, str]]] = {}
    for match in re.finditer(r"pub struct (\w+) \{(.*?)\n\}", text, re.S):
        fields = re.findall(r"^\s*pub (\w+): ([\w:<>]+),", match.group(2), re.M)
        structs[match.group(1)] = fields

    def walk(struct: str, prefix: str) -> set[str]:
        out: set[str] = set()
        for name, kind in structs.get(struct, []):
            path = f"{prefix}{name}"
            if kind in structs:
                out |= walk(kind, path + ".")
            else:
                out.add(path)
        return out

    return walk("Config", "")


def readme_settings() -> set[str]:
    """The settings of the configuration table in README.md (first column, in backticks)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("### Configuration", 1)[1].split("\n### ", 1)[0]
    found: set[str] = set()
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        first = line.split("|")[1]
        found |= {name for name in re.findall(r"`([^`]+)`", first) if not name.startswith("-")}
    return found


def schema_config_leaves(schema: dict[str, Any]) -> set[str]:
    def walk(node: dict[str, Any], prefix: str) -> set[str]:
        if node.get("type") == "object" and "properties" in node:
            out: set[str] = set()
            for key, child in node["properties"].items():
                out |= walk(child, f"{prefix}{key}.")
            return out
        return {prefix.rstrip(".")}

    return walk(schema["properties"]["config"], "")


def defined_metrics() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "crates").glob("*/src/**/metrics.rs"):
        names |= set(re.findall(r'"(coachflow_[a-z0-9_]+)"', path.read_text()))
    return names


def health_service_names() -> dict[str, str]:
    """The health service names the server answers (process/health.rs): LIVENESS, READINESS."""
    text = (SERVER_CRATE / "src" / "process" / "health.rs").read_text()
    return dict(re.findall(r'pub const (\w+): &str = "([^"]*)";', text))


def rust_default_ports() -> dict[str, int]:
    text = (SERVER_CRATE / "src" / "process" / "config.rs").read_text()
    ports = {}
    for section in ("GrpcConfig", "MetricsConfig"):
        block = text.split(f"impl Default for {section}", 1)[1].split("\n}\n", 1)[0]
        ports[section] = int(re.search(r'listen: "[^"]*:(\d+)"', block).group(1))
    return ports


def subcommands() -> set[str]:
    text = (SERVER_CRATE / "src" / "process" / "cli" / "mod.rs").read_text()
    block = text.split("enum Command {", 1)[1].split("\n}", 1)[0]
    return {name.lower() for name in re.findall(r"^\s*(\w+)(?:\(|\s*\{|,)", block, re.M)}


def parse_seconds(text: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(ms|s|m|h|d)", text).groups()
    return int(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


# --- rendering ----------------------------------------------------------------------------------

def load_values(name: str) -> dict[str, Any]:
    return helm.values_from_yaml((CHART / "ci" / name).read_text())


def render(chart: helm.Chart, values: dict[str, Any] | None) -> dict[str, str]:
    return chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def documents(rendered: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for template, text in sorted(rendered.items()):
        if template.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                docs.append((template, doc))
    return docs


def validate_manifests(scenario: str, docs: list[tuple[str, dict[str, Any]]]) -> None:
    for template, doc in docs:
        kind, api = doc.get("kind"), doc.get("apiVersion")
        where = f"{scenario}: {template.split('/', 1)[1]} {kind}/{doc.get('metadata', {}).get('name')}"
        if (api, kind) in UNVALIDATED_KINDS:
            report.note(f"{where}: {api} is a CRD, not in Kubernetes' schemas; not validated by kubernetes-validate")
            continue
        try:
            version = kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
            check(True, f"{where} is valid against Kubernetes {version} (strict)")
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            check(False, f"{where} is valid against Kubernetes {KUBE_VERSION}", f"{path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            check(False, f"{where} has a Kubernetes schema", error.message)


# --- one rendered release, checked against itself ------------------------------------------------

def by_kind(docs: list[tuple[str, dict[str, Any]]], kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in docs if doc["kind"] == kind]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def mounted_secret_file(pod: dict[str, Any], container: dict[str, Any], path: str) -> str | None:
    """The Secret that provides `path` in the container, or None."""
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        prefix = mount["mountPath"].rstrip("/") + "/"
        if not path.startswith(prefix):
            continue
        volume = volumes.get(mount["name"], {})
        secret = volume.get("secret")
        if secret and path[len(prefix):] in [item["path"] for item in secret.get("items", [])]:
            return secret["secretName"]
    return None


def check_security(where: str, pod: dict[str, Any]) -> None:
    pod_context = pod.get("securityContext", {})
    check(pod_context.get("runAsNonRoot") is True, f"{where}: pod runAsNonRoot")
    check(pod_context.get("runAsUser", 1) != 0, f"{where}: pod runAsUser is not 0")
    check(pod_context.get("seccompProfile", {}).get("type") == "RuntimeDefault",
          f"{where}: pod seccomp profile RuntimeDefault")
    check(pod.get("automountServiceAccountToken") is False,
          f"{where}: no Kubernetes API token mounted")
    # Service links would put COACHFLOW_SERVICE_HOST, COACHFLOW_PORT_50051_TCP, ... (from a
    # Service named coachflow) into the environment, and the server refuses every COACHFLOW_*
    # variable that is not a setting.
    check(pod.get("enableServiceLinks") is False,
          f"{where}: enableServiceLinks false (no COACHFLOW_SERVICE_HOST and the like, which the server would refuse)")
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    for container in pod["containers"]:
        context = container.get("securityContext", {})
        name = f"{where}: container {container['name']}"
        check(context.get("readOnlyRootFilesystem") is True, f"{name}: read-only root filesystem")
        check(context.get("allowPrivilegeEscalation") is False, f"{name}: no privilege escalation")
        check(context.get("runAsNonRoot") is True, f"{name}: runAsNonRoot")
        capabilities = context.get("capabilities", {})
        check("ALL" in capabilities.get("drop", []) and not capabilities.get("add"),
              f"{name}: drops ALL capabilities, adds none")
        writable = [mount["name"] for mount in container.get("volumeMounts", []) if not mount.get("readOnly")]
        check(all("emptyDir" in volumes.get(mount, {}) for mount in writable),
              f"{name}: writes only to emptyDir volumes ({', '.join(writable)})")
        resources = container.get("resources", {})
        check(bool(resources.get("requests", {}).get("cpu")) and bool(resources.get("requests", {}).get("memory"))
              and bool(resources.get("limits", {}).get("memory")),
              f"{name}: cpu and memory requests, memory limit")
        image = container["image"]
        check(("@sha256:" in image or re.search(r":[^/:]+$", image) is not None) and not image.endswith(":latest"),
              f"{name}: image {image} has a tag or digest, not latest")


def config_file(docs: list[tuple[str, dict[str, Any]]], name: str) -> tuple[str, dict[str, Any]]:
    for cm in by_kind(docs, "ConfigMap"):
        if cm["metadata"]["name"] == name:
            text = cm["data"]["config.yaml"]
            return text, yaml.safe_load(text)
    raise KeyError(name)


def check_release(scenario: str, values: dict[str, Any], rendered: dict[str, str],
                  schema: dict[str, Any], image_env: dict[str, str]) -> None:
    docs = documents(rendered)
    notes = next(text for template, text in rendered.items() if template.endswith("NOTES.txt"))
    deployments = by_kind(docs, "Deployment")
    if not check(len(deployments) == 1, f"{scenario}: one Deployment"):
        return
    deployment = deployments[0]
    fullname = deployment["metadata"]["name"]
    pod_template = deployment["spec"]["template"]
    pod = pod_template["spec"]
    pod_labels = pod_template["metadata"]["labels"]
    container = pod["containers"][0]
    ports = {port["name"]: port["containerPort"] for port in container.get("ports", [])}
    where = f"{scenario}: Deployment"

    unlabelled, misplaced = [], []
    for _, doc in docs:
        metadata = doc["metadata"]
        labels = metadata.get("labels", {})
        if labels.get("app.kubernetes.io/instance") != RELEASE or labels.get("app.kubernetes.io/managed-by") != "Helm":
            unlabelled.append(f"{doc['kind']}/{metadata['name']}")
        expected_ns = values["grafanaDashboard"]["namespace"] if metadata["name"].endswith("-dashboard") else ""
        if metadata.get("namespace") != (expected_ns or NAMESPACE):
            misplaced.append(f"{doc['kind']}/{metadata['name']}")
    check(not unlabelled, f"{scenario}: every manifest carries the release's labels", str(unlabelled))
    check(not misplaced, f"{scenario}: every manifest names its namespace", str(misplaced))

    # The configuration file.
    text, config = config_file(docs, fullname)
    sqlite = not values["database"]["existingSecret"]
    file_schema = json.loads(json.dumps(schema["properties"]["config"]))
    file_schema["definitions"] = schema["definitions"]
    managed = json.loads(json.dumps(config))
    if sqlite:
        check(managed.get("database", {}).get("url", "").startswith("sqlite:///var/lib/coachflow/"),
              f"{scenario}: development mode: database.url is the SQLite file on the data volume")
    managed.get("database", {}).pop("url", None)
    managed.pop("server", None)
    errors = sorted(jsonschema.Draft7Validator(file_schema).iter_errors(managed), key=str)
    check(not errors, f"{scenario}: config.yaml holds only known settings of the right types",
          "; ".join(f"{'.'.join(map(str, error.path))}: {error.message}" for error in errors[:5]))
    check("url" not in config.get("broker", {}) and (sqlite or "url" not in config.get("database", {})),
          f"{scenario}: no database or broker URL in the ConfigMap (they come from Secrets)")
    manifests_text = "\n".join(text for template, text in rendered.items() if not template.endswith("NOTES.txt"))
    credentials = re.findall(r"[a-z+]+://[^\s/:@]+:[^\s/@]+@", manifests_text)
    check(not credentials, f"{scenario}: no URL with a password anywhere in the manifests", str(credentials))
    auth = config.get("auth", {})
    check(all(auth.get(key) for key in ("issuer", "audience", "jwks")),
          f"{scenario}: auth.issuer, auth.audience and auth.jwks are set (the server refuses 0.0.0.0 without them)")
    annotation = (pod_template["metadata"].get("annotations") or {}).get("checksum/config")
    digest = hashlib.sha256(text.removesuffix("\n").encode()).hexdigest()
    check(annotation == digest, f"{where}: checksum/config is the sha256 of config.yaml, so a change rolls the pods",
          f"{annotation} != {digest}")

    # Ports, listen addresses and the image's environment.
    grpc_port = port_of(config["grpc"]["listen"])
    check(ports.get("grpc") == grpc_port, f"{where}: container port grpc = {grpc_port} of grpc.listen")
    metrics_listen = config.get("metrics", {}).get("listen", "")
    metrics_services = [svc for svc in by_kind(docs, "Service") if svc["metadata"]["name"] == f"{fullname}-metrics"]
    if metrics_listen:
        check(ports.get("metrics") == port_of(metrics_listen),
              f"{where}: container port metrics = {port_of(metrics_listen)} of metrics.listen")
        check(len(metrics_services) == 1, f"{scenario}: a separate metrics Service")
    else:
        check("metrics" not in ports and not metrics_services,
              f"{scenario}: metrics.listen is off: no metrics port, no metrics Service")
    env = {item["name"]: item for item in container.get("env", [])}
    file_value = {
        "COACHFLOW_GRPC_LISTEN": config["grpc"]["listen"],
        "COACHFLOW_METRICS_LISTEN": metrics_listen,
        "COACHFLOW_LOG_FORMAT": config.get("log", {}).get("format", "human"),
    }
    for name in image_env:
        check(env.get(name, {}).get("value") == file_value.get(name),
              f"{where}: sets {name} (an ENV of the image, which would win over the file) to the file's value {file_value.get(name)!r}")
    known_env = {env_name(path) for path in schema_config_leaves(schema) | set(CHART_MANAGED)}
    unknown = [name for name in env if name.startswith("COACHFLOW_") and name not in known_env]
    check(not unknown, f"{where}: every COACHFLOW_* variable is a setting (the server refuses others)", str(unknown))
    check(env.get("COACHFLOW_INSTANCE_ID", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name",
          f"{where}: instance_id is the pod's name")
    for setting, secret in (("DATABASE", values["database"]), ("BROKER", values["broker"])):
        ref = env.get(f"COACHFLOW_{setting}_URL", {}).get("valueFrom", {}).get("secretKeyRef")
        if secret["existingSecret"]:
            check(ref == {"name": secret["existingSecret"], "key": secret["existingSecretKey"]},
                  f"{where}: COACHFLOW_{setting}_URL from Secret {secret['existingSecret']} key {secret['existingSecretKey']}")
        else:
            check(ref is None, f"{where}: no COACHFLOW_{setting}_URL without a Secret")
    kek = values.get("content") or {}
    ref = env.get("COACHFLOW_CONTENT_KEK", {}).get("valueFrom", {}).get("secretKeyRef")
    if kek.get("existingSecret"):
        check(ref == {"name": kek["existingSecret"], "key": kek["existingSecretKey"]},
              f"{where}: COACHFLOW_CONTENT_KEK from Secret {kek['existingSecret']} key {kek['existingSecretKey']}")
    else:
        check(ref is None and "COACHFLOW_CONTENT_KEK" not in env, f"{where}: no COACHFLOW_CONTENT_KEK without a Secret")

    # Files from Secrets.
    jwks = auth.get("jwks", "")
    if values["authJwks"]["existingSecret"]:
        path = jwks.removeprefix("file://")
        check(jwks.startswith("file:///") and mounted_secret_file(pod, container, path) == values["authJwks"]["existingSecret"],
              f"{where}: auth.jwks {jwks} is a file of Secret {values['authJwks']['existingSecret']}")
    for key, path in config.get("server", {}).get("tls", {}).items():
        check(mounted_secret_file(pod, container, path) is not None,
              f"{where}: server.tls.{key} {path} is a mounted Secret file")
    if values["tls"]["enabled"]:
        check({"cert", "key"} <= set(config.get("server", {}).get("tls", {})), f"{scenario}: TLS on: server.tls.cert and key set")
    check(("client_ca" in config.get("server", {}).get("tls", {})) == bool(values["tls"]["enabled"] and values["tls"]["clientCA"]["enabled"]),
          f"{scenario}: server.tls.client_ca set exactly when mutual TLS is on")

    # The command line.
    config_path = container["args"][2] if len(container["args"]) > 2 else ""
    check(container["args"][:2] == ["serve", "--config"], f"{where}: runs `serve --config {config_path}`")
    config_volume = next((v for v in pod["volumes"] if v.get("configMap", {}).get("name") == fullname), None)
    mount = next((m for m in container["volumeMounts"] if config_volume and m["name"] == config_volume["name"]), None)
    check(mount is not None and config_path == f"{mount['mountPath']}/config.yaml",
          f"{where}: --config names config.yaml of the mounted ConfigMap")

    # Probes.
    tls_tcp = values["tls"]["enabled"] and values["probes"]["withTLS"] == "tcp"
    names = health_service_names()
    for probe, service in (("readinessProbe", names["READINESS"]), ("livenessProbe", names["LIVENESS"]),
                           ("startupProbe", names["LIVENESS"])):
        spec = container.get(probe, {})
        if tls_tcp:
            check(spec.get("tcpSocket", {}).get("port") == "grpc", f"{where}: {probe} is a TCP check of grpc (TLS on, probes.withTLS=tcp)")
        else:
            grpc = spec.get("grpc", {})
            check(grpc.get("port") == grpc_port and grpc.get("service") == service,
                  f"{where}: {probe} is a gRPC health check of service {service!r} on {grpc_port}")
            check((grpc.get("mode") == "TLS") == bool(values["tls"]["enabled"]),
                  f"{where}: {probe} uses mode TLS exactly when server TLS is on")

    # Shutdown.
    grace = parse_seconds(config["shutdown"]["grace"])
    drain = parse_seconds(config["shutdown"].get("drain_delay", "0s"))
    period = pod.get("terminationGracePeriodSeconds", 30)
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    check(period > grace and period >= pre_stop + drain + 2 * grace,
          f"{where}: terminationGracePeriodSeconds {period} >= preStop {pre_stop} + shutdown.drain_delay {drain:g}s"
          f" + 2 x shutdown.grace {grace:g}s (not ready first, then requests, then the relay)")
    job = bool(by_kind(docs, "Job"))
    migrate = config.get("database", {}).get("migrate", True)
    check(migrate is (not job),
          f"{where}: database.migrate is {str(migrate).lower()}: "
          + ("the migration Job migrates, replicas never race it" if job else "no Job, the server migrates at start"))

    # Replicas, spreading, disruption budget, autoscaler.
    hpa = by_kind(docs, "HorizontalPodAutoscaler")
    if values["autoscaling"]["enabled"]:
        check("replicas" not in deployment["spec"], f"{where}: no replicas field, the HPA owns the count")
        check(len(hpa) == 1 and hpa[0]["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": fullname},
              f"{scenario}: the HPA scales Deployment {fullname}")
        check(hpa and hpa[0]["spec"]["minReplicas"] <= hpa[0]["spec"]["maxReplicas"], f"{scenario}: HPA minReplicas <= maxReplicas")
        least = values["autoscaling"]["minReplicas"]
    else:
        check(deployment["spec"].get("replicas") == values["replicaCount"] and not hpa,
              f"{where}: {values['replicaCount']} replicas, no HPA")
        least = values["replicaCount"]
    check(selects(deployment["spec"]["selector"]["matchLabels"], pod_labels), f"{where}: its selector matches its pods")
    if values["podAntiAffinity"]["enabled"] and not values["affinity"]:
        terms = pod.get("affinity", {}).get("podAntiAffinity", {}).get("preferredDuringSchedulingIgnoredDuringExecution", [])
        check(any(term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
                  and selects(term["podAffinityTerm"]["labelSelector"]["matchLabels"], pod_labels) for term in terms),
              f"{where}: prefers spreading its pods over nodes")
    for constraint in pod.get("topologySpreadConstraints", []):
        check(selects(constraint.get("labelSelector", {}).get("matchLabels", {"-": "-"}), pod_labels),
              f"{where}: topology spread over {constraint['topologyKey']} selects its own pods")
    if sqlite:
        check(deployment["spec"]["strategy"]["type"] == "Recreate", f"{where}: SQLite: Recreate, never two pods on one file")
    else:
        rolling = deployment["spec"]["strategy"].get("rollingUpdate", {})
        check(rolling.get("maxUnavailable") == 0, f"{where}: rolling update keeps every replica until its successor is ready")
    pdbs = by_kind(docs, "PodDisruptionBudget")
    if values["podDisruptionBudget"]["enabled"]:
        if check(len(pdbs) == 1 and pdbs[0]["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"],
                 f"{scenario}: the PodDisruptionBudget selects the Deployment's pods"):
            spec = pdbs[0]["spec"]
            allows = (spec["minAvailable"] < least) if isinstance(spec.get("minAvailable"), int) else \
                (spec.get("maxUnavailable", 0) not in (0, "0%"))
            budget = {key: spec[key] for key in ("minAvailable", "maxUnavailable") if key in spec}
            check(allows, f"{scenario}: the PodDisruptionBudget lets a drain evict a pod ({budget}, at least {least} replicas)")

    # Services.
    services = {svc["metadata"]["name"]: svc for svc in by_kind(docs, "Service")}
    grpc_service = services.get(fullname)
    if check(grpc_service is not None, f"{scenario}: gRPC Service {fullname}"):
        check(selects(grpc_service["spec"]["selector"], pod_labels), f"{scenario}: gRPC Service selects the pods")
        check([p["targetPort"] for p in grpc_service["spec"]["ports"]] == ["grpc"],
              f"{scenario}: gRPC Service exposes only the grpc port")
    for svc in services.values():
        for port in svc["spec"]["ports"]:
            check(port["targetPort"] in ports, f"{scenario}: Service {svc['metadata']['name']} targets container port {port['targetPort']}")

    # The migration Job.
    jobs = by_kind(docs, "Job")
    if values["migration"]["enabled"] and not sqlite:
        if check(len(jobs) == 1, f"{scenario}: a migration Job"):
            check_migration(scenario, jobs[0], docs, deployment, fullname, text, pod_labels, services)
    else:
        check(not jobs, f"{scenario}: no migration Job (SQLite file per pod, or migration.enabled=false)")

    check_security(where, pod)
    if jobs:
        check_security(f"{scenario}: migration Job", jobs[0]["spec"]["template"]["spec"])

    # Monitoring, network policy, dashboard.
    for monitor in by_kind(docs, "ServiceMonitor"):
        check_service_monitor(scenario, monitor, metrics_services)
    if values["metrics"]["serviceMonitor"]["enabled"]:
        check(len(by_kind(docs, "ServiceMonitor")) == 1, f"{scenario}: a ServiceMonitor")
    policies = by_kind(docs, "NetworkPolicy")
    if values["networkPolicy"]["enabled"] and check(len(policies) == 1, f"{scenario}: a NetworkPolicy"):
        policy = policies[0]["spec"]
        check(policy["podSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"],
              f"{scenario}: the NetworkPolicy selects the pods")
        allowed = {port["port"] for rule in policy.get("ingress", []) for port in rule.get("ports", [])}
        check(allowed == set(ports), f"{scenario}: the NetworkPolicy admits exactly the container ports {sorted(ports)}", str(allowed))
        if values["networkPolicy"]["restrictEgress"]:
            dns = {port["port"] for rule in policy.get("egress", []) for port in rule.get("ports", [])}
            check("Egress" in policy["policyTypes"] and 53 in dns, f"{scenario}: restricted egress still allows DNS")
    dashboards = [cm for cm in by_kind(docs, "ConfigMap") if cm["metadata"]["name"] == f"{fullname}-dashboard"]
    if values["grafanaDashboard"]["enabled"] and check(len(dashboards) == 1, f"{scenario}: the Grafana dashboard ConfigMap"):
        cm = dashboards[0]
        check(cm["metadata"]["labels"].get("grafana_dashboard") == "1", f"{scenario}: dashboard ConfigMap labelled grafana_dashboard=1")
        shipped = json.loads((CHART / "dashboards" / "coachflow.json").read_text())
        check(json.loads(cm["data"]["coachflow.json"]) == shipped, f"{scenario}: the ConfigMap holds dashboards/coachflow.json")

    # NOTES.txt.
    example = any("example.com" in str(auth.get(key, "")) for key in ("issuer", "audience"))
    example = example or ("example.com" in jwks)
    check(("WARNING" in notes and "EXAMPLE VALUES" in notes) == example,
          f"{scenario}: NOTES.txt warns about example auth values exactly when they are in use")
    check(f"{fullname}.{NAMESPACE}.svc.cluster.local:{values['service']['port']}" in notes
          and "port-forward" in notes and "grpc.health.v1.Health/Check" in notes and '"readiness"' in notes,
          f"{scenario}: NOTES.txt gives the in-cluster address, a port-forward and a grpcurl health check")


def check_migration(scenario: str, job: dict[str, Any], docs: list[tuple[str, dict[str, Any]]],
                    deployment: dict[str, Any], fullname: str, config_text: str,
                    pod_labels: dict[str, str], services: dict[str, dict[str, Any]]) -> None:
    where = f"{scenario}: migration Job"
    annotations = job["metadata"]["annotations"]
    check(set(annotations.get("helm.sh/hook", "").split(",")) == {"pre-install", "pre-upgrade"},
          f"{where}: a pre-install,pre-upgrade hook")
    check(set(annotations.get("helm.sh/hook-delete-policy", "").split(",")) == {"before-hook-creation", "hook-succeeded"},
          f"{where}: hook-delete-policy before-hook-creation,hook-succeeded")
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    server = deployment["spec"]["template"]["spec"]["containers"][0]
    check(container["args"] == ["migrate"] + server["args"][1:], f"{where}: runs `migrate` with the server's --config",
          str(container["args"]))
    check(container["image"] == server["image"], f"{where}: the server's image")
    check(pod["restartPolicy"] == "Never" and job["spec"].get("activeDeadlineSeconds"), f"{where}: bounded (deadline, no endless restarts)")
    database = lambda c: next((e for e in c.get("env", []) if e["name"] == "COACHFLOW_DATABASE_URL"), None)
    check(database(container) is not None and database(container) == database(server), f"{where}: the server's database Secret")
    config_map_name = next(v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v)
    hook_config = next((cm for cm in by_kind(docs, "ConfigMap") if cm["metadata"]["name"] == config_map_name), None)
    job_weight = int(annotations.get("helm.sh/hook-weight", "0"))
    if check(hook_config is not None and config_map_name != fullname, f"{where}: its own ConfigMap {config_map_name} (hooks run before the release's resources exist)"):
        check(hook_config["data"]["config.yaml"] == config_text, f"{where}: its configuration file is the server's")
        hook_annotations = hook_config["metadata"].get("annotations", {})
        check("pre-install" in hook_annotations.get("helm.sh/hook", "") and int(hook_annotations.get("helm.sh/hook-weight", "0")) < job_weight,
              f"{where}: its ConfigMap is a hook created before the Job")
    account = pod.get("serviceAccountName", "default")
    accounts = {sa["metadata"]["name"]: sa for sa in by_kind(docs, "ServiceAccount")}
    if account in accounts:
        hook = accounts[account]["metadata"].get("annotations", {})
        check("pre-install" in hook.get("helm.sh/hook", "") and int(hook.get("helm.sh/hook-weight", "0")) < job_weight,
              f"{where}: its ServiceAccount {account} exists before the Job (a hook of lower weight)")
    else:
        report.note(f"{where}: uses the existing ServiceAccount {account}")
    strip = lambda volumes: [v for v in volumes if "configMap" not in v]
    check(strip(pod["volumes"]) == strip(deployment["spec"]["template"]["spec"]["volumes"]),
          f"{where}: the server's Secret volumes (it validates the same file paths)")
    job_labels = job["spec"]["template"]["metadata"]["labels"]
    check(not any(selects(svc["spec"]["selector"], job_labels) for svc in services.values()),
          f"{where}: its pod is selected by no Service")


def check_service_monitor(scenario: str, monitor: dict[str, Any], metrics_services: list[dict[str, Any]]) -> None:
    where = f"{scenario}: ServiceMonitor (checked here instead of against a schema)"
    spec = monitor["spec"]
    if not check(len(metrics_services) == 1, f"{where}: there is a metrics Service to scrape"):
        return
    service = metrics_services[0]
    check(selects(spec["selector"]["matchLabels"], service["metadata"]["labels"]), f"{where}: selects the metrics Service")
    names = {port["name"] for port in service["spec"]["ports"]}
    check(all(endpoint.get("port") in names and endpoint.get("path", "/metrics") == "/metrics" for endpoint in spec["endpoints"]),
          f"{where}: scrapes port {sorted(names)} at /metrics")
    check(NAMESPACE in spec.get("namespaceSelector", {}).get("matchNames", []), f"{where}: looks in the release's namespace")
    for endpoint in spec["endpoints"]:
        check(parse_seconds(endpoint["scrapeTimeout"]) <= parse_seconds(endpoint["interval"]),
              f"{where}: scrapeTimeout <= interval")


# --- refusals ------------------------------------------------------------------------------------

def expect_refusal(chart: helm.Chart, schema: dict[str, Any], name: str, values: dict[str, Any],
                   fragment: str, by_schema: bool) -> None:
    try:
        render(chart, values)
    except helm.HelmValuesError as error:
        check(by_schema and fragment in str(error), f"refused by values.schema.json: {name}",
              f"expected {'the schema' if by_schema else 'a template check'} naming {fragment!r}: {error}")
        if by_schema:
            merged = chart.merge_values(values)
            valid = jsonschema.Draft7Validator(schema).is_valid(merged)
            check(not valid, f"jsonschema (Draft 7) refuses it too: {name}")
        return
    except helm.HelmError as error:
        check(not by_schema and fragment in str(error), f"refused by the chart's template checks: {name}",
              f"expected {'the schema' if by_schema else 'a template check'} naming {fragment!r}: {error}")
        return
    check(False, f"refused: {name}", "it rendered")


# --- the Dockerfile --------------------------------------------------------------------------------

def dockerignore_matcher(patterns: list[str]) -> Callable[[str], bool]:
    """True when Docker would leave the path out of the build context (the last matching
    pattern decides; a pattern matches a path or any of its parents)."""
    rules = []
    for raw in patterns:
        negated = raw.startswith("!")
        pattern = raw[1:] if negated else raw
        pattern = pattern.strip().strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**", i):
                regex += ".*"
                i += 2
                if pattern.startswith("/", i):
                    regex += "/?"
                    i += 1
                continue
            char = pattern[i]
            regex += "[^/]*" if char == "*" else "[^/]" if char == "?" else re.escape(char)
            i += 1
        rules.append((re.compile(f"^{regex}$"), negated))

    def excluded(path: str) -> bool:
        parts = path.strip("/").split("/")
        candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        result = False
        for regex, negated in rules:
            if any(regex.match(candidate) for candidate in candidates):
                result = not negated
        return result

    return excluded


def check_dockerfile(chart_values: dict[str, Any], schema: dict[str, Any]) -> dict[str, str]:
    report.section("Dockerfile (BuildKit's parser, hadolint, the workspace and the chart)")
    path = ROOT / "Dockerfile"
    try:
        commands = dockerfile.parse_file(str(path))
    except (dockerfile.GoParseError, dockerfile.GoIOError) as error:
        check(False, "Dockerfile parses", str(error))
        return {}
    check(True, f"Dockerfile parses ({len(commands)} instructions)")
    known = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
             "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL", "MAINTAINER"}
    unknown = [c.cmd for c in commands if c.cmd.upper() not in known]
    check(not unknown, "every instruction is a Dockerfile instruction", str(unknown))

    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run([str(hadolint), "--no-color", "--failure-threshold", "warning", str(path)],
                            capture_output=True, text=True)
    check(result.returncode == 0, "hadolint finds no warning or error",
          (result.stdout + result.stderr).strip().replace("\n", "\n      "))
    for line in result.stdout.strip().splitlines():
        report.note(f"hadolint: {line}")

    # Stages, with the global ARGs' defaults substituted.
    args: dict[str, str] = {}
    stages: list[dict[str, Any]] = []
    for command in commands:
        if command.cmd.upper() == "ARG" and not stages:
            name, _, default = command.value[0].partition("=")
            args[name] = default
        elif command.cmd.upper() == "FROM":
            if not check(bool(command.value), f"line {command.start_line}: FROM names an image"):
                return {}
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), ""), command.value[0])
            alias = command.value[2] if len(command.value) > 2 and command.value[1].upper() == "AS" else None
            stages.append({"image": image, "alias": alias, "commands": []})
        elif stages:
            stages[-1]["commands"].append(command)
    if not check(len(stages) >= 2, f"multi-stage build ({', '.join(s['image'] for s in stages)})"):
        return {}
    builder, runtime = stages[0], stages[-1]

    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
    server = tomllib.loads((SERVER_CRATE / "Cargo.toml").read_text())
    package = server["package"]["name"]
    bins = [item["name"] for item in server.get("bin", [])]
    binary = bins[0] if bins else package
    msrv = cargo["workspace"]["package"]["rust-version"]
    match = re.fullmatch(r"(?:docker\.io/(?:library/)?)?rust:(\d+\.\d+)(?:\.\d+)?-(\w+)", builder["image"])
    if check(match is not None, f"builder is an official Rust image, rust:<version>-<debian> ({builder['image']})"):
        version, debian = match.groups()
        as_tuple = lambda v: tuple(int(x) for x in v.split(".")[:2])
        check(as_tuple(version) >= as_tuple(msrv), f"builder's Rust {version} >= workspace rust-version {msrv}")
        runtime_match = re.fullmatch(r"gcr\.io/distroless/cc-debian(\d+)(:[\w.-]+)?(@sha256:[a-f0-9]{64})?", runtime["image"])
        if check(runtime_match is not None, f"runtime is distroless/cc ({runtime['image']})"):
            check(DEBIAN_MAJOR.get(debian) == int(runtime_match.group(1)),
                  f"builder's Debian {debian} is the runtime's debian{runtime_match.group(1)} (same glibc)")
    runs = " ".join(" ".join(c.value) for c in builder["commands"] if c.cmd.upper() == "RUN")
    build = re.search(r"cargo build ([^&;]*)", runs)
    flags = build.group(1).split() if build else []
    check(build is not None and "--release" in flags and "--locked" in flags
          and flags[flags.index("-p") + 1 if "-p" in flags else 0] == package
          and flags[flags.index("--bin") + 1 if "--bin" in flags else 0] == binary,
          f"builder runs cargo build --release --locked -p {package} --bin {binary}", build.group(0) if build else runs)
    out = re.search(rf"target/release/{re.escape(binary)}\s+(\S+)", runs)
    check(out is not None, f"builder copies target/release/{binary} out of the cached target/")

    entrypoint = [c for c in runtime["commands"] if c.cmd.upper() == "ENTRYPOINT"]
    cmd = [c for c in runtime["commands"] if c.cmd.upper() == "CMD"]
    target = f"/usr/local/bin/{binary}"
    check(len(entrypoint) == 1 and entrypoint[0].json and list(entrypoint[0].value) == [target],
          f"ENTRYPOINT [\"{target}\"] (exec form): the binary [[bin]] name = \"{binary}\"")
    copies = [c for c in runtime["commands"] if c.cmd.upper() == "COPY"]
    from_builder = [c for c in copies if f"--from={builder['alias']}" in c.flags]
    check(any(c.value[-1] == target and out and c.value[0] == out.group(1) for c in from_builder),
          f"runtime copies the builder's {out.group(1) if out else '?'} to {target}")
    commands_known = subcommands()
    check(len(cmd) == 1 and cmd[0].json and list(cmd[0].value) == ["serve"] and "serve" in commands_known,
          "CMD [\"serve\"], a subcommand of main.rs")
    check({"serve", "migrate"} <= commands_known, "the chart's `serve` and `migrate` are subcommands of main.rs")
    check(not [c for c in runtime["commands"] if c.cmd.upper() == "RUN"], "no RUN in the runtime stage (distroless has no shell)")
    users = [c for c in runtime["commands"] if c.cmd.upper() == "USER"]
    user = users[-1].value[0] if users else "0"
    uid = user.split(":")[0]
    check(uid.isdigit() and int(uid) != 0, f"USER {user}: numeric (the kubelet can verify runAsNonRoot) and not root")
    check(chart_values["podSecurityContext"]["runAsUser"] in (None, int(uid) if uid.isdigit() else -1),
          f"the chart's default runAsUser is the image's USER {uid}")
    workdirs = [c.value[0] for c in runtime["commands"] if c.cmd.upper() == "WORKDIR"]
    if workdirs:
        check(any(c.value[-1] == workdirs[-1] and f"--chown={user}" in c.flags for c in copies),
              f"WORKDIR {workdirs[-1]} belongs to {user} (the SQLite default is created there)")

    env: dict[str, str] = {}
    for command in runtime["commands"]:
        if command.cmd.upper() == "ENV":
            values = list(command.value)
            for name, value in zip(values[::2], values[1::2]):
                env[name] = value.strip('"')
    settings = schema_config_leaves(schema) | set(CHART_MANAGED)
    unknown = [name for name in env if name.startswith("COACHFLOW_") and name not in {env_name(s) for s in settings}]
    check(not unknown, f"ENV {', '.join(env)}: settings the service knows", str(unknown))
    exposed = {int(port.split("/")[0]) for c in runtime["commands"] if c.cmd.upper() == "EXPOSE" for port in c.value}
    chart_ports = {port_of(chart_values["config"]["grpc"]["listen"]), port_of(chart_values["config"]["metrics"]["listen"])}
    defaults = rust_default_ports()
    check(exposed == chart_ports, f"EXPOSE {sorted(exposed)} = the chart's container ports {sorted(chart_ports)}")
    check(exposed == set(defaults.values()), f"EXPOSE {sorted(exposed)} = the service's default ports (config.rs) {sorted(defaults.values())}")
    check({port_of(env.get("COACHFLOW_GRPC_LISTEN", ":0")), port_of(env.get("COACHFLOW_METRICS_LISTEN", ":0"))} == exposed,
          "the image's listen addresses use the EXPOSEd ports")

    # The build context.
    ignore = ROOT / ".dockerignore"
    if check(ignore.exists(), ".dockerignore exists"):
        patterns = [line for line in ignore.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]
        excluded = dockerignore_matcher(patterns)
        needed = ["Cargo.toml", "Cargo.lock", "proto/coachflow/v1/models.proto"]
        needed += [f"{member}/Cargo.toml" for member in cargo["workspace"]["members"]]
        # Patched crates (vendor/): the build reads them as it reads the members.
        needed += [f"{spec['path']}/Cargo.toml" for registry in cargo.get("patch", {}).values()
                   for spec in registry.values() if isinstance(spec, dict) and "path" in spec]
        needed += [str(p.relative_to(ROOT)) for p in SERVER_CRATE.rglob("*.rs") if "target" not in p.parts][:50]
        missing = [p for p in needed if excluded(p)]
        check(not missing, "the build context keeps the manifests, the lock file, every workspace member, the patched crates and the protos", str(missing))
        left_out = ["target/release/coachflow", ".git/HEAD", "tools/asyncapi/node_modules/x/package.json",
                    "helm/coachflow/values.yaml", "coachflow.db", "crates/coachflow-server/target/x"]
        kept = [p for p in left_out if not excluded(p)]
        check(not kept, "the build context leaves out target/, .git, node_modules, the chart and local databases", str(kept))

    # The binary's shared libraries, when one is built here (the image's build compiles its own).
    readelf = shutil.which("readelf")
    built = [p for p in (ROOT / "target" / "release" / binary, ROOT / "target" / "debug" / binary) if p.exists()]
    if built and readelf:
        needed_libs = set(re.findall(r"Shared library: \[([^\]]+)\]",
                                     subprocess.run([readelf, "-d", str(built[0])], capture_output=True, text=True).stdout))
        check(needed_libs <= DISTROLESS_CC_LIBS,
              f"{built[0].relative_to(ROOT)} needs only libraries distroless/cc has ({', '.join(sorted(needed_libs))})",
              str(needed_libs - DISTROLESS_CC_LIBS))
    else:
        report.note("no built coachflow binary under target/ (or no readelf): its shared libraries were not checked")
    return env


# --- the configuration reference, the metrics, the dashboard ----------------------------------

def check_settings(schema: dict[str, Any]) -> None:
    report.section("Every setting reachable through values (config.rs, README.md)")
    chart = schema_config_leaves(schema)
    reachable = chart | set(CHART_MANAGED)
    rust = rust_settings()
    readme = readme_settings()
    check(len(rust) > 20 and len(readme) > 20, f"read {len(rust)} settings from config.rs and {len(readme)} from README.md")
    missing = sorted(rust - reachable)
    check(not missing, "every setting of config.rs is in values.schema.json's config (or set by the chart)", str(missing))
    missing = sorted(readme - reachable)
    check(not missing, "every setting of README.md's configuration table is reachable", str(missing))
    for path in sorted(CHART_MANAGED):
        if path in rust:
            report.note(f"{path}: set by the chart from {CHART_MANAGED[path]}")
    unknown = sorted(chart - rust)
    check(not unknown, "values.schema.json offers no setting that config.rs lacks", str(unknown))


def check_dashboard() -> None:
    report.section("Grafana dashboard (dashboards/coachflow.json) against the service's metrics")
    path = CHART / "dashboards" / "coachflow.json"
    try:
        dashboard = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        check(False, "the dashboard is JSON", str(error))
        return
    check(True, "the dashboard is JSON")
    panels = [panel for panel in dashboard.get("panels", []) if panel.get("type") != "row"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    check(len(ids) == len(set(ids)), f"{len(panels)} panels with unique ids")
    check(all("gridPos" in panel for panel in dashboard["panels"]), "every panel has a position")
    variables = {item["name"] for item in dashboard.get("templating", {}).get("list", [])}
    exprs = [target["expr"] for panel in panels for target in panel.get("targets", [])]
    check(bool(exprs) and all(panel.get("targets") for panel in panels), f"every panel queries ({len(exprs)} queries)")
    used_vars = set(re.findall(r"\$(\w+)", " ".join(exprs))) - {"__rate_interval", "__interval", "__range"}
    check(used_vars <= variables, f"the queries use only defined variables {sorted(variables)}", str(used_vars - variables))
    datasources = {json.dumps(target.get("datasource")) for panel in panels for target in panel["targets"]}
    check(datasources == {json.dumps({"type": "prometheus", "uid": "${datasource}"})}, "every query uses the $datasource variable")
    defined = defined_metrics()
    used = set()
    for name in re.findall(r"\b(coachflow_[a-z0-9_]+)", " ".join(exprs)):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        used.add(base if base in defined else name)
    for name in sorted(used):
        check(name in defined, f"{name} is defined in crates/", "no such metric name in crates/*/src")
    check(DASHBOARD_REQUIRED <= used, "the dashboard shows requests by method and code, latency, timers, outbox and relay lag, engagements",
          str(DASHBOARD_REQUIRED - used))
    quantiles = set(re.findall(r"histogram_quantile\((0\.\d+), sum by \(le, method\) \(rate\(coachflow_grpc_request_duration_seconds_bucket", " ".join(exprs)))
    check({"0.5", "0.99"} <= quantiles, "request latency p50 and p99 from the histogram's buckets")
    absent = sorted(defined - used)
    if absent:
        report.note(f"defined but not on the dashboard: {', '.join(absent)}")


# --- optional: the service's own loader -----------------------------------------------------------

def check_with_binary(config_text: str) -> None:
    binary = os.environ.get("HELM_CHECK_BINARY")
    if not binary:
        report.note("HELM_CHECK_BINARY not set: the rendered configuration was not fed to a coachflow binary")
        return
    binary = str(Path(binary).resolve())
    report.section(f"The default configuration file, read by {binary}")
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "config.yaml"
        path.write_text(config_text)
        env = {key: value for key, value in os.environ.items() if not key.startswith("COACHFLOW_")}
        env["COACHFLOW_DATABASE_URL"] = "sqlite::memory:"
        result = subprocess.run([binary, "migrate", "--config", str(path)], env=env,
                                capture_output=True, text=True, timeout=120, cwd=directory)
        check(result.returncode == 0, f"`{Path(binary).name} migrate --config` accepts the chart's configuration file",
              (result.stdout + result.stderr).strip()[-800:])


# --- main ------------------------------------------------------------------------------------------

def guarded(title: str, run: Callable[[], Any], fallback: Any = None) -> Any:
    """Runs one group of checks; a crash inside it (a file in a shape nobody expected) is a
    failure of that group, reported with its cause, and the other groups still run."""
    try:
        return run()
    except Exception as error:  # noqa: BLE001 - every crash is reported as a failed check
        check(False, f"{title} could be checked", f"{type(error).__name__}: {error}")
        return fallback


def main() -> int:
    started = time.monotonic()
    print(f"helm-python-sdk {helm.__version__} (Helm SDK {helm.helm_sdk_version()}), "
          f"kubernetes-validate {kubernetes_validate.__version__} (schemas up to {kv_utils.latest_version()}), "
          f"Kubernetes version checked: {KUBE_VERSION}")
    if kv_utils.latest_version() != KUBE_VERSION.rsplit(".", 1)[0] + ".0" and kv_utils.latest_version() != KUBE_VERSION:
        report.note(f"kubernetes-validate knows Kubernetes {kv_utils.latest_version()}; KUBE_VERSION is {KUBE_VERSION}")

    schema = json.loads((CHART / "values.schema.json").read_text())
    report.section("values.schema.json")
    try:
        jsonschema.Draft7Validator.check_schema(schema)
        check(True, "values.schema.json is a valid JSON Schema (draft 7)")
    except jsonschema.SchemaError as error:
        check(False, "values.schema.json is a valid JSON Schema (draft 7)", error.message)

    chart_meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
    check(chart_meta["apiVersion"] == "v2", "Chart.yaml apiVersion v2")
    check(str(chart_meta["appVersion"]) == cargo["workspace"]["package"]["version"],
          f"Chart.yaml appVersion {chart_meta['appVersion']} = the workspace's version {cargo['workspace']['package']['version']}")

    report.section("helm lint (strict: warnings fail)")
    scenarios_lint = {"default values": None, "ci/production-values.yaml": load_values("production-values.yaml")}
    for name, values in scenarios_lint.items():
        result = helm.lint(CHART, values, strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSION}")
        problems = [m for m in result["messages"] if m["severity"] >= 2] + [{"error": e} for e in result["errors"]]
        for message in result["messages"]:
            if message["severity"] < 2:
                report.note(f"lint ({name}): {message['path']}: {message['error']}")
        check(result["total_charts_linted"] == 1 and not problems, f"helm lint passes with {name}",
              "; ".join(str(p.get("error")) for p in problems))
    bad_lint = helm.lint(CHART, load_values("bad-values.yaml"), strict=True, namespace=NAMESPACE)
    check(any("replicaCount" in str(e) for e in bad_lint["errors"]), "helm lint reports ci/bad-values.yaml's replicaCount")

    with helm.Chart.load(CHART) as chart:
        check(chart.schema == schema, "Helm loads values.schema.json with the chart")
        defaults = chart.values
        scenarios: dict[str, dict[str, Any] | None] = {
            "default": None,
            "production": load_values("production-values.yaml"),
            "development": {"mode": "development", "replicaCount": 1,
                            "database": {"existingSecret": ""}, "broker": {"existingSecret": ""}},
            "mtls-jwks-file": {
                "config": {"auth": {"issuer": "https://id.acme-coaching.test/", "audience": "coachflow",
                                    "jwks": "https://id.acme-coaching.test/jwks"},
                           "metrics": {"listen": ""}, "shutdown": {"grace": "45s"}},
                "authJwks": {"existingSecret": "coachflow-jwks"},
                "tls": {"enabled": True, "existingSecret": "coachflow-tls",
                        "clientCA": {"enabled": True, "existingSecret": "coachflow-client-ca"}},
                "serviceAccount": {"create": False, "name": "coachflow-runtime"},
                "podDisruptionBudget": {"maxUnavailable": "50%"},
                "preStopSleepSeconds": 0,
            },
            "tls-grpc-probes": {"tls": {"enabled": True, "existingSecret": "coachflow-tls"},
                                "probes": {"withTLS": "grpcTLS"}, "service": {"port": 443},
                                "image": {"digest": "sha256:" + "0" * 64}},
        }
        env = guarded("the Dockerfile", lambda: check_dockerfile(defaults, schema), {})
        default_config = ""
        for name, values in scenarios.items():
            report.section(f"render: {name}")
            try:
                rendered = render(chart, values)
            except helm.HelmError as error:
                check(False, f"{name}: the chart renders", str(error))
                continue
            merged = chart.merge_values(values)
            check(jsonschema.Draft7Validator(schema).is_valid(merged), f"{name}: jsonschema (Draft 7) accepts the values too")
            docs = documents(rendered)
            kinds = sorted({doc["kind"] for _, doc in docs})
            check(True, f"{name}: rendered {len(docs)} manifests ({', '.join(kinds)})")
            validate_manifests(name, docs)
            guarded(f"{name}: the release", lambda: check_release(name, merged, rendered, schema, env))
            if name == "default":
                default_config = config_file(docs, by_kind(docs, "Deployment")[0]["metadata"]["name"])[0]

        report.section("refusals: wrong values must not render")
        expect_refusal(chart, schema, "ci/bad-values.yaml (replicaCount: \"three\")", load_values("bad-values.yaml"), "/replicaCount", True)
        expect_refusal(chart, schema, "production without database.existingSecret", {"database": {"existingSecret": ""}}, "/database/existingSecret", True)
        expect_refusal(chart, schema, "production without broker.existingSecret", {"broker": {"existingSecret": ""}}, "/broker/existingSecret", True)
        expect_refusal(chart, schema, "development on SQLite with 2 replicas", {"mode": "development", "database": {"existingSecret": ""}}, "/replicaCount", True)
        expect_refusal(chart, schema, "a misspelt setting (config.timers.batchsize)", {"config": {"timers": {"batchsize": 10}}}, "batchsize", True)
        expect_refusal(chart, schema, "a database URL in clear (config.database.url)", {"config": {"database": {"url": "postgres://app:secret@db/coachflow"}}}, "url", True)
        expect_refusal(chart, schema, "key-encryption keys in clear (config.content.kek)", {"config": {"content": {"kek": "AAAA"}}}, "kek", True)
        expect_refusal(chart, schema, "key-encryption keys from both content.existingSecret and config.content.kek_file",
                       {"content": {"existingSecret": "coachflow-kek"}, "config": {"content": {"kek_file": "/etc/coachflow/kek/keys"}}}, "kek_file", False)
        expect_refusal(chart, schema, "retention.tenants that is not a JSON object", {"config": {"retention": {"tenants": "acme: 365d"}}}, "retention.tenants", False)
        expect_refusal(chart, schema, "a retention period of 0", {"config": {"retention": {"closed_content_after": "0d"}}}, "/config/retention/closed_content_after", True)
        expect_refusal(chart, schema, "gRPC on loopback (unreachable for probes and Services)", {"config": {"grpc": {"listen": "127.0.0.1:50051"}}}, "/config/grpc/listen", True)
        expect_refusal(chart, schema, "a duration the service cannot parse", {"config": {"shutdown": {"grace": "30 seconds"}}}, "/config/shutdown/grace", True)
        expect_refusal(chart, schema, "a count of the wrong type", {"config": {"database": {"max_connections": "16"}}}, "/config/database/max_connections", True)
        expect_refusal(chart, schema, "no auth settings", {"config": {"auth": None}}, "auth", True)
        expect_refusal(chart, schema, "a JWKS over plain http", {"config": {"auth": {"jwks": "http://idp/jwks"}}}, "/config/auth/jwks", True)
        expect_refusal(chart, schema, "TLS without its Secret", {"tls": {"enabled": True}}, "/tls/existingSecret", True)
        expect_refusal(chart, schema, "mutual TLS with TLS gRPC probes (the kubelet has no client certificate)",
                       {"tls": {"enabled": True, "existingSecret": "t", "clientCA": {"enabled": True}}, "probes": {"withTLS": "grpcTLS"}}, "withTLS", True)
        expect_refusal(chart, schema, "a ServiceMonitor without the metrics endpoint",
                       {"config": {"metrics": {"listen": ""}}, "metrics": {"serviceMonitor": {"enabled": True}}}, "/config/metrics/listen", True)
        expect_refusal(chart, schema, "an unknown top-level value", {"replicas": 3}, "replicas", True)
        expect_refusal(chart, schema, "autoscaling minReplicas > maxReplicas",
                       {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 3}}, "minReplicas", False)
        expect_refusal(chart, schema, "a PodDisruptionBudget that blocks every drain",
                       {"podDisruptionBudget": {"minAvailable": 2}}, "minAvailable", False)

    guarded("the settings", lambda: check_settings(schema))
    guarded("the dashboard", check_dashboard)
    guarded("the configuration with a coachflow binary", lambda: check_with_binary(default_config))

    elapsed = time.monotonic() - started
    print()
    for message in report.failed:
        print(f"failed: {message}")
    print(f"checked in {elapsed:.1f}s")
    print(f"helm: {report.passed} passed, {len(report.failed)} failed")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
