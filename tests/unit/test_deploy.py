"""The deployment material, checked as far as a machine without Docker or a cluster allows:
the compose file against the Compose specification's JSON Schema, the Kubernetes manifests
against the API's schemas (kubernetes-validate), and the facts that must agree across them
(image, port, probes, selectors, environment, rules) against the code."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from handlers.rules import Rules
from streams.ops.metrics import Metrics, exported_names
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES_VERSION = "1.33"

# kafka_exporter (danielqsj/kafka_exporter), the lag exporter of docker-compose.yml: the series
# it exports, from the "Metrics" section of docs/operations.md.
KAFKA_EXPORTER = {
    "kafka_brokers", "kafka_broker_info", "kafka_topic_partitions", "kafka_topic_partition_current_offset",
    "kafka_topic_partition_oldest_offset", "kafka_topic_partition_in_sync_replica",
    "kafka_topic_partition_leader", "kafka_topic_partition_leader_is_preferred",
    "kafka_topic_partition_replicas", "kafka_topic_partition_under_replicated_partition",
    "kafka_consumergroup_current_offset", "kafka_consumergroup_current_offset_sum",
    "kafka_consumergroup_lag", "kafka_consumergroup_lag_sum", "kafka_consumergroup_members",
}
PROMETHEUS_BUILTIN = {"up"}


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def manifests() -> list[dict[str, Any]]:
    docs = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def of_kind(kind: str) -> dict[str, Any]:
    found = [d for d in manifests() if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def dockerfile() -> str:
    return (DEPLOY / "Dockerfile").read_text()


def settings_env_names() -> set[str]:
    return set(Settings().as_env())


# -- docker-compose.yml ----------------------------------------------------------------------------

def test_compose_file_follows_the_compose_specification() -> None:
    schema = json.loads((ROOT / "tests" / "data" / "compose-spec.json").read_text())
    document = compose()
    document.pop("name")  # top-level `name` came after this copy of the schema (docker-compose 1.29)
    for service in document["services"].values():
        # `service_completed_successfully` also came later; the rest of depends_on is checked.
        for dependency in (service.get("depends_on") or {}).values() if isinstance(service.get("depends_on"), dict) else ():
            if dependency.get("condition") == "service_completed_successfully":
                dependency["condition"] = "service_healthy"
    jsonschema.Draft201909Validator(schema).validate(document)


def test_compose_runs_the_whole_stack() -> None:
    services = compose()["services"]
    assert set(services) >= {"kafka", "redis", "topics", "worker", "kafka-exporter", "prometheus", "grafana"}
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper
    assert services["worker"]["deploy"]["replicas"] == 2
    assert services["topics"]["command"] == ["topics"]
    assert services["worker"]["depends_on"]["topics"]["condition"] == "service_completed_successfully"


def test_compose_worker_image_port_and_environment_agree_with_the_dockerfile() -> None:
    services = compose()["services"]
    topics, worker = services["topics"], services["worker"]
    assert (ROOT / topics["build"]["context"] / topics["build"]["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    assert worker["image"] == topics["image"], "the workers run the image the topics step builds"
    port = re.search(r"^EXPOSE (\d+)$", dockerfile(), re.M)
    assert port is not None
    assert worker["environment"]["REWARDS_WEB_PORT"] == port.group(1)
    assert worker["expose"] == [port.group(1)]
    assert set(worker["environment"]) <= settings_env_names(), "every variable is a setting the worker reads"
    # the rules file mounted is the one the environment names, and it is a valid rules file
    source, target, _ = worker["volumes"][0].split(":")
    assert worker["environment"]["REWARDS_RULES_FILE"] == target
    Rules.from_toml((ROOT / source).read_text())
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in prometheus["scrape_configs"] if j["job_name"] == "rewards-worker")
    assert job["dns_sd_configs"][0]["names"] == ["worker"]
    assert str(job["dns_sd_configs"][0]["port"]) == port.group(1)
    for volume in services["prometheus"]["volumes"] + services["grafana"]["volumes"]:
        assert (ROOT / volume.split(":")[0]).exists(), volume


def test_dockerfile_builds_the_package_and_runs_the_worker() -> None:
    text = dockerfile()
    assert re.search(r"^FROM python:3\.11", text, re.M)
    for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.M):
        *sources, _ = line.split()
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such path in the repository"
    assert 'ENTRYPOINT ["rewards"]' in text and 'CMD ["worker"]' in text
    assert "/health" in text  # the HEALTHCHECK asks the worker's health page


# -- Kubernetes ------------------------------------------------------------------------------------

@pytest.mark.parametrize("document", manifests(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_manifest_is_valid_for_the_kubernetes_api(document: dict[str, Any]) -> None:
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_deployment_probes_ports_and_selectors_agree() -> None:
    deployment, service, pdb = of_kind("Deployment"), of_kind("Service"), of_kind("PodDisruptionBudget")
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    port = container["ports"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert str(port["containerPort"]) == env["REWARDS_WEB_PORT"] == re.search(r"^EXPOSE (\d+)$", dockerfile(), re.M).group(1)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] == port["name"], probe
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert set(env) <= settings_env_names()
    labels = pod["metadata"]["labels"]
    for selector in (deployment["spec"]["selector"]["matchLabels"], service["spec"]["selector"],
                     pdb["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]
    assert pdb["spec"]["minAvailable"] < deployment["spec"]["replicas"], "a drain can always proceed"
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(port["containerPort"])


def test_configmap_rules_are_valid_and_mounted_where_the_worker_reads_them() -> None:
    configmap, deployment = of_kind("ConfigMap"), of_kind("Deployment")
    text = configmap["data"]["rules.toml"]
    assert Rules.from_toml(text) == Rules.default()
    assert text == (ROOT / "handlers" / "rules.toml").read_text(), "the ConfigMap holds the defaults verbatim"
    spec = deployment["spec"]["template"]["spec"]
    volume = next(v for v in spec["volumes"] if v.get("configMap", {}).get("name") == configmap["metadata"]["name"])
    mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == volume["name"])
    env = {e["name"]: e["value"] for e in spec["containers"][0]["env"]}
    assert env["REWARDS_RULES_FILE"] == f"{mount['mountPath']}/rules.toml"


# -- dashboards and alerts -------------------------------------------------------------------------

PROMQL_WORDS = {
    "sum", "rate", "irate", "increase", "deriv", "delta", "changes", "histogram_quantile", "max", "min", "avg",
    "count", "by", "without", "on", "ignoring", "and", "or", "unless", "absent", "time", "le", "topic",
    "partition", "type", "reason", "instance", "consumergroup", "job", "group_left", "group_right", "offset",
}


def queried_metrics(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions, keywords,
    label names (inside braces or by(...)) or strings."""
    expr = re.sub(r'"[^"]*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "{}", expr)
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "[]", expr)
    names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr))
    return {n for n in names if n not in PROMQL_WORDS and not re.fullmatch(r"\d+[smhd]?", n)}


def dashboard_queries() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "rewards.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def alert_queries() -> list[str]:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def test_the_metric_name_extraction_sees_what_a_query_reads() -> None:
    expr = 'sum by (topic) (rate(rewards_outputs_total{type="x"}[5m])) > 0 and on (topic) kafka_consumergroup_lag'
    assert queried_metrics(expr) == {"rewards_outputs_total", "kafka_consumergroup_lag"}


def test_every_metric_the_dashboard_and_alerts_query_is_exported() -> None:
    exported = exported_names(Metrics()) | KAFKA_EXPORTER | PROMETHEUS_BUILTIN
    queries = dashboard_queries() + alert_queries()
    assert len(queries) >= 20
    queried = set().union(*(queried_metrics(q) for q in queries))
    assert queried - exported == set()
    # and the dashboard covers what the issue asks of it
    joined = " ".join(queries)
    for needed in ("kafka_consumergroup_lag", "rewards_consumer_lag", "rewards_events_applied_total",
                   "rewards_pipeline_latency_seconds_bucket", "rewards_rejections_total"):
        assert needed in joined


def test_alerts_cover_lag_stalled_commits_and_dead_letters() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    alerts = {rule["alert"]: rule for group in rules["groups"] for rule in group["rules"]}
    assert {"RewardsLagGrowing", "RewardsCommittedOffsetStalled", "RewardsDeadLetterRate"} <= set(alerts)
    for rule in alerts.values():
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]


def test_grafana_provisioning_points_at_the_dashboard_folder_compose_mounts() -> None:
    provider = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "rewards.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    mounts = dict(v.split(":")[:2][::-1] for v in compose()["services"]["grafana"]["volumes"])
    assert (ROOT / mounts[path] / "rewards.json").exists()
    datasource = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uids = {panel["datasource"]["uid"] for panel in json.loads((ROOT / mounts[path] / "rewards.json").read_text())["panels"]}
    # the panels use the dashboard's datasource variable, whose default is the provisioned (default) one
    assert uids == {"${datasource}"}
    assert datasource["datasources"][0]["type"] == "prometheus" and datasource["datasources"][0]["isDefault"] is True


# -- shipping ----------------------------------------------------------------------------------------

def test_the_pod_meets_the_restricted_pod_security_standard() -> None:
    """The checks of the "restricted" profile (kubernetes.io/docs/concepts/security/pod-security-standards)."""
    pod = of_kind("Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"]["type"] in ("RuntimeDefault", "Localhost")
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    assert all("hostPath" not in volume for volume in pod.get("volumes", []))
    for container in pod["containers"] + pod.get("initContainers", []):
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert context["capabilities"]["drop"] == ["ALL"] and not context["capabilities"].get("add"), container["name"]
        assert not context.get("privileged") and context.get("runAsUser", 1) != 0, container["name"]
        assert not any("hostPort" in port for port in container.get("ports", [])), container["name"]


def test_replicas_spread_over_nodes() -> None:
    deployment = of_kind("Deployment")
    pod = deployment["spec"]["template"]
    [by_node] = [c for c in pod["spec"]["topologySpreadConstraints"] if c["topologyKey"] == "kubernetes.io/hostname"]
    assert by_node["whenUnsatisfiable"] == "DoNotSchedule" and by_node["maxSkew"] == 1
    assert by_node["labelSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()


def test_the_image_is_tagged_with_the_project_version_everywhere() -> None:
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    images = [c["image"] for c in of_kind("Deployment")["spec"]["template"]["spec"]["containers"]]
    images += [s["image"] for s in compose()["services"].values() if s.get("image", "").startswith("rewards")]
    assert images and set(images) == {f"rewards:{version}"}
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    assert kustomization["images"] == [{"name": "rewards", "newTag": version}]


def test_the_lock_files_pin_every_dependency_with_hashes() -> None:
    """The image installs requirements.lock and `make setup` requirements-dev.lock, both with
    --require-hashes: every requirement is pinned (==) and hashed, and every dependency that
    pyproject.toml names is in them."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for lock, names in (("requirements.lock", project["dependencies"]),
                        ("requirements-dev.lock", project["dependencies"] + project["optional-dependencies"]["dev"])):
        text = (ROOT / lock).read_text()
        entries = re.findall(r"^([A-Za-z0-9._-]+)==(\S+) \\\n((?:\s+--hash=sha256:[0-9a-f]{64}\s*\\?\n?)+)", text, re.M)
        pinned = {name.lower().replace("_", "-") for name, _, _ in entries}
        assert len(entries) == len(re.findall(r"^[A-Za-z0-9._-]+==", text, re.M)), f"{lock}: a pin without hashes"
        for requirement in names:
            name = re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")
            assert name in pinned, f"{lock} lacks {name}"
    assert "--require-hashes -r /tmp/requirements.lock" in dockerfile()
    assert "--require-hashes -r requirements-dev.lock" in (ROOT / "Makefile").read_text()


def test_the_dashboard_asks_for_its_datasource_and_app_id() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "rewards.json").read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert "rewards_build_info" in variables["app"]["definition"]
    assert "rewards_build_info" in variables["instance"]["definition"] and "$app" in variables["instance"]["definition"]
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel.get("targets", []):
            expr = target["expr"]
            assert '"rewards-' not in expr, f"{panel['title']}: the app id is a variable, not rewards"
            for name in re.findall(r"\b(rewards_[a-z_]+)", expr):
                assert re.search(rf'{name}\{{[^}}]*instance=~"\$instance"', expr), f"{panel['title']}: {name}"


def test_the_lag_exporter_speaks_a_protocol_kafka_4_accepts() -> None:
    command = compose()["services"]["kafka-exporter"]["command"]
    [version] = [c.split("=", 1)[1] for c in command if c.startswith("--kafka.version=")]
    assert tuple(int(n) for n in version.split(".")) >= (3, 0, 0)
