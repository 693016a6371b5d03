"""The Kubernetes manifests: rendered by kustomize, valid against the Kubernetes schemas of
the targeted release and the vendored operator CRDs, and covering the contracts (every
topic has a KafkaTopic, every migration runs ON CLUSTER, every command is a real one)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from typing import Any

import click
import kubernetes_validate
import pytest

from console.cli import main as kibamail_cli
from kibamail.clickhouse_schema import MIGRATIONS_DIR, render, statements
from kibamail.contracts import ClickHouseTable, Topic
from tests.deploy_support import (
    K8S,
    KUBERNETES_VERSION,
    OVERLAYS,
    crd_errors,
    crd_schemas,
)
from tests.deploy_support import render as render_overlay

pytestmark = pytest.mark.unit


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("k8s_generate", K8S / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _objects(overlay: str, kind: str) -> list[dict[str, Any]]:
    return [obj for obj in render_overlay(overlay) if obj["kind"] == kind]


def _pod_specs(overlay: str) -> list[tuple[str, dict[str, Any]]]:
    specs = []
    for obj in render_overlay(overlay):
        if obj["kind"] in ("Deployment", "StatefulSet", "Job"):
            specs.append(
                (f"{obj['kind']}/{obj['metadata']['name']}", obj["spec"]["template"]["spec"])
            )
    return specs


def test_generated_manifests_are_committed() -> None:
    result = subprocess.run(
        [sys.executable, str(K8S / "generate.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_valid_for_its_schema(overlay: str) -> None:
    errors = []
    custom = 0
    for obj in render_overlay(overlay):
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        if (obj["apiVersion"], obj["kind"]) in crd_schemas():
            custom += 1
            errors += [f"{name}: {e}" for e in crd_errors(obj)]
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{name}: {exc.message}")
    assert not errors, "\n".join(errors)
    # Kafka, node pool(s), 12 topics, CHI, CHK, FlinkDeployment: the CRs were really checked.
    assert custom >= 17


def test_schema_checks_catch_a_broken_object() -> None:
    """The validators are not vacuous: a typo in a Deployment and in a Kafka CR both fail."""
    deployment = json.loads(json.dumps(_objects("small", "Deployment")[0]))
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    kafka = json.loads(json.dumps(_objects("small", "Kafka")[0]))
    kafka["spec"]["kafka"]["listeners"][0]["type"] = "public"
    assert crd_errors(kafka)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_contract_topic_has_a_kafka_topic(overlay: str) -> None:
    topics = {obj["spec"]["topicName"]: obj["spec"] for obj in _objects(overlay, "KafkaTopic")}
    missing = [t.value for t in Topic if t.value not in topics]
    assert not missing, f"contract topics without a KafkaTopic: {missing}"
    assert set(topics) == {t.value for t in Topic}, "a KafkaTopic no contract names"
    for name, spec in topics.items():
        assert spec["replicas"] == 3 and spec["partitions"] >= 3, name
        assert int(spec["config"]["retention.ms"]) > 0, name


def test_a_topic_without_sizing_stops_the_generator() -> None:
    generate = _generator()
    del generate.TOPIC_SIZING[Topic.DEAD_LETTER]
    with pytest.raises(SystemExit, match="kibamail_dead_letter"):
        generate.kafka_topics()


def _migration_job(overlay: str) -> dict[str, Any]:
    (job,) = [
        j for j in _objects(overlay, "Job") if j["metadata"]["name"] == "kibamail-warehouse-migrate"
    ]
    return job


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_migration_runs_on_the_installation_cluster(overlay: str) -> None:
    (chi,) = _objects(overlay, "ClickHouseInstallation")
    clusters = [c["name"] for c in chi["spec"]["configuration"]["clusters"]]
    (config,) = [
        c for c in _objects(overlay, "ConfigMap") if c["metadata"]["name"] == "kibamail-config"
    ]
    cluster = config["data"]["KIBAMAIL_CLICKHOUSE__CLUSTER"]
    assert cluster in clusters
    container = _migration_job(overlay)["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["kibamail", "warehouse", "migrate"]
    assert {"configMapRef": {"name": "kibamail-config"}} in container["envFrom"]
    # The migrations ledger lives on one fixed replica of the installation.
    host = {e["name"]: e["value"] for e in container["env"]}["KIBAMAIL_CLICKHOUSE__HOST"]
    assert host == f"chi-{chi['metadata']['name']}-{cluster}-0-0"
    created = set()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        for stmt in statements(render(path.read_text(), "kibamail", cluster)):
            head = stmt.split("(")[0]
            assert f"ON CLUSTER '{cluster}'" in head, f"{path.name}: not ON CLUSTER: {head[:80]}"
            if stmt.upper().startswith("CREATE TABLE"):
                assert "Replicated" in stmt or "MergeTree" not in stmt, f"{path.name}: {head}"
                created.add(head.split(".")[1].split()[0])
    missing = [t.value for t in ClickHouseTable if t.value not in created]
    assert not missing, f"contract tables no migration creates: {missing}"


def test_production_clickhouse_is_two_shards_of_two_replicas() -> None:
    (chi,) = _objects("production", "ClickHouseInstallation")
    assert chi["spec"]["configuration"]["clusters"][0]["layout"] == {
        "shardsCount": 2,
        "replicasCount": 2,
    }
    (keeper,) = _objects("production", "ClickHouseKeeperInstallation")
    assert keeper["spec"]["configuration"]["clusters"][0]["layout"]["replicasCount"] == 3


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_contract_table_is_distributed_over_the_shards(overlay: str) -> None:
    """On 2 shards a plain Replicated table holds half the rows: the application's table
    names are Distributed tables over <name>_local, and an acknowledged insert is on the
    shards (foreground inserts), so the sinks' dedup tokens reach each shard's table."""
    (chi,) = _objects(overlay, "ClickHouseInstallation")
    cluster = chi["spec"]["configuration"]["clusters"][0]["name"]
    distributed = {}
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        for stmt in statements(render(path.read_text(), "kibamail", cluster)):
            if "ENGINE = Distributed(" in stmt:
                distributed[stmt.split(".")[1].split()[0]] = stmt
    for table in ClickHouseTable:
        assert f"'kibamail', '{table.value}_local', cityHash64(" in distributed[table.value]
    profiles = chi["spec"]["configuration"]["profiles"]
    assert profiles["default/distributed_foreground_insert"] == 1
    assert profiles["default/insert_deduplicate"] == 1


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kafka_runs_kraft_node_pools(overlay: str) -> None:
    pools = _objects(overlay, "KafkaNodePool")
    roles = {role for pool in pools for role in pool["spec"]["roles"]}
    assert roles == {"controller", "broker"}
    assert sum(p["spec"]["replicas"] for p in pools if "controller" in p["spec"]["roles"]) == 3
    assert all(p["metadata"]["labels"]["strimzi.io/cluster"] == "kibamail" for p in pools)


def _is_cli_command(argv: list[str]) -> bool:
    """argv names a real `kibamail` (sub)command of console/cli.py."""
    if argv[:1] != ["kibamail"]:
        return False
    command: click.Command = kibamail_cli
    words = argv[1:]
    while words and not words[0].startswith("-"):
        if not isinstance(command, click.Group) or words[0] not in command.commands:
            return False
        command, words = command.commands[words[0]], words[1:]
    known = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
    return all(w.split("=")[0] in known for w in words if w.startswith("-"))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_is_hardened_and_sized(overlay: str) -> None:
    problems = []
    for name, spec in _pod_specs(overlay):
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec.get("automountServiceAccountToken") is False, name
        for container in spec["containers"]:
            where = f"{name}/{container['name']}"
            resources = container.get("resources", {})
            if not {"cpu", "memory"} <= set(resources.get("requests", {})) & set(
                resources.get("limits", {})
            ):
                problems.append(f"{where}: requests/limits")
            sc = container.get("securityContext", {})
            if (
                sc.get("allowPrivilegeEscalation") is not False
                or sc.get("readOnlyRootFilesystem") is not True
            ):
                problems.append(f"{where}: security context")
            if spec.get("restartPolicy") is None and not {"readinessProbe", "livenessProbe"} <= set(
                container
            ):
                problems.append(f"{where}: probes")
            if container["image"].startswith("ghcr.io/kibamail/") and not _is_cli_command(
                container["command"]
            ):
                problems.append(f"{where}: {container['command']} is no kibamail command")
            for env in container.get("env", []):
                secretish = any(w in env["name"] for w in ("PASSWORD", "SECRET", "TOKEN", "AUTH"))
                if secretish and "value" in env:
                    problems.append(f"{where}: {env['name']} inlined")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_is_written_into_the_manifests(overlay: str) -> None:
    assert not _objects(overlay, "Secret")
    (config,) = [
        c for c in _objects(overlay, "ConfigMap") if c["metadata"]["name"] == "kibamail-config"
    ]
    secret_words = ("PASSWORD", "SECRET", "TOKEN", "DATABASE__URL", "REDIS__URL")
    assert not [key for key in config["data"] if any(w in key for w in secret_words)]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_api_and_the_smtp_edge_take_outside_traffic(overlay: str) -> None:
    policies = {p["metadata"]["name"]: p["spec"] for p in _objects(overlay, "NetworkPolicy")}
    assert policies["default-deny-ingress"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    public = set()
    for spec in policies.values():
        for rule in spec.get("ingress", []):
            if "from" not in rule:  # any source
                selector = spec["podSelector"]
                public |= set(selector.get("matchLabels", {}).values())
                for expr in selector.get("matchExpressions", []):
                    public |= set(expr["values"])
            else:
                for peer in rule["from"]:
                    assert "ipBlock" not in peer
                    assert peer.get("podSelector") == {} or "namespaceSelector" in peer
    assert public == {"kibamail-api", "kibamail-tracking", "kibamail-smtp-edge"}
    exposed = [
        s["metadata"]["name"]
        for s in _objects(overlay, "Service")
        if s["spec"].get("type") in ("LoadBalancer", "NodePort")
    ]
    assert exposed == ["kibamail-smtp-edge"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pipelines_are_one_bytewax_cluster_with_stable_addresses(overlay: str) -> None:
    (sts,) = [
        s for s in _objects(overlay, "StatefulSet") if s["metadata"]["name"] == "kibamail-pipelines"
    ]
    env = {e["name"]: e for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]}
    addresses = json.loads(env["KIBAMAIL_PIPELINES__ADDRESSES"]["value"])
    replicas = sts["spec"]["replicas"]
    service = sts["spec"]["serviceName"]
    assert addresses == [f"kibamail-pipelines-{i}.{service}:2101" for i in range(replicas)]
    field = env["KIBAMAIL_PIPELINES__PROCESS_ID"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert field == "metadata.labels['apps.kubernetes.io/pod-index']"
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    claim = volumes["recovery"]["persistentVolumeClaim"]["claimName"]
    (pvc,) = [
        p for p in _objects(overlay, "PersistentVolumeClaim") if p["metadata"]["name"] == claim
    ]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]


def test_the_overlays_differ_where_the_sizing_says() -> None:
    def replicas(overlay: str, name: str) -> int:
        (sts,) = [s for s in _objects(overlay, "StatefulSet") if s["metadata"]["name"] == name]
        return int(sts["spec"]["replicas"])

    assert replicas("small", "kibamail-pipelines") == 2
    assert replicas("production", "kibamail-pipelines") == 3
    assert [s["metadata"]["name"] for s in _objects("small", "StatefulSet")].count("mariadb") == 1
    assert not [
        s for s in _objects("production", "StatefulSet") if s["metadata"]["name"] == "mariadb"
    ]
