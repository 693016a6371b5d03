"""Write the generated parts of the Kubernetes base from the code they must follow.

- ``base/kafka-topics.yaml``: one Strimzi ``KafkaTopic`` per ``kibamail.contracts.Topic``
  (partitions, replication and retention from ``TOPIC_SIZING`` below; a contract topic
  without a sizing row is an error, so a new topic cannot ship without its KafkaTopic);
- ``base/grafana.yaml``: the dashboards of ``grafana/dashboards`` and the datasource
  provisioning of ``grafana/provisioning`` as ConfigMaps (Grafana sidecar labels);
- ``base/apps.yaml``: every Kibamail process role as a workload of the one image, with the
  same security context, probes, requests/limits and configuration everywhere.

Run ``python infra/deploy/k8s/generate.py`` after changing a topic, a dashboard or a role;
``--check`` exits 1 when the committed files differ (tests/test_deploy_k8s.py runs it).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(REPO))

from kibamail.contracts import Topic  # noqa: E402

BASE = HERE / "base"
HOUR_MS = 3_600_000
IMAGE = "kibamail"
APP_LABEL = "app.kubernetes.io/name"
PART_OF = {"app.kubernetes.io/part-of": "kibamail"}

# partitions, retention (hours). Kafka is partitioned by team id (the producers' key), so
# partitions bound the consumers' parallelism: the hot MTA status path gets the most.
TOPIC_SIZING: dict[Topic, tuple[int, int]] = {
    Topic.MESSAGE_STATUSES: (24, 7 * 24),
    Topic.CLICKHOUSE_MESSAGES: (24, 3 * 24),
    Topic.EMAIL_OPENS: (12, 7 * 24),
    Topic.EMAIL_CLICKS: (12, 7 * 24),
    Topic.CLICKHOUSE_EMAIL_OPENS: (12, 3 * 24),
    Topic.CLICKHOUSE_EMAIL_CLICKS: (12, 3 * 24),
    Topic.UNSUBSCRIBES: (6, 14 * 24),
    Topic.SUBMISSION_FEATURES: (12, 2 * 24),
    Topic.REPUTATION_SIGNALS: (6, 7 * 24),
    Topic.TEAM_PAUSES: (3, 30 * 24),
    Topic.TEAM_PAUSE_AUDIT: (3, 30 * 24),
    Topic.DOMAIN_CHECKS: (3, 30 * 24),
    Topic.DEAD_LETTER: (3, 30 * 24),
}
KAFKA_CLUSTER = "kibamail"
TOPIC_REPLICAS = 3


def kafka_topics() -> list[dict[str, Any]]:
    missing = [t.value for t in Topic if t not in TOPIC_SIZING]
    if missing:
        raise SystemExit(f"no KafkaTopic sizing for contract topics: {', '.join(missing)}")
    docs = []
    for topic in Topic:
        partitions, hours = TOPIC_SIZING[topic]
        docs.append(
            {
                "apiVersion": "kafka.strimzi.io/v1",
                "kind": "KafkaTopic",
                "metadata": {
                    # Kubernetes names allow no underscores; spec.topicName keeps the contract's.
                    "name": topic.value.replace("_", "-"),
                    "labels": {"strimzi.io/cluster": KAFKA_CLUSTER, **PART_OF},
                },
                "spec": {
                    "topicName": topic.value,
                    "partitions": partitions,
                    "replicas": TOPIC_REPLICAS,
                    "config": {
                        "retention.ms": str(hours * HOUR_MS),
                        "min.insync.replicas": "2",
                        "cleanup.policy": "delete",
                        "compression.type": "producer",
                    },
                },
            }
        )
    return docs


def grafana_configmaps() -> list[dict[str, Any]]:
    docs = []
    for path in sorted((REPO / "grafana" / "dashboards").glob("*.json")):
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": f"grafana-dashboard-{path.stem}",
                    "labels": {"grafana_dashboard": "1", **PART_OF},
                    "annotations": {"grafana_folder": "Kibamail"},
                },
                "data": {path.name: path.read_text()},
            }
        )
    datasources = REPO / "grafana" / "provisioning" / "datasources" / "kibamail.yaml"
    docs.append(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "grafana-datasource-kibamail",
                "labels": {"grafana_datasource": "1", **PART_OF},
            },
            "data": {datasources.name: datasources.read_text()},
        }
    )
    return docs


def _labels(role: str) -> dict[str, str]:
    return {APP_LABEL: f"kibamail-{role}", "app.kubernetes.io/component": role, **PART_OF}


def _container(
    role: str,
    command: list[str],
    *,
    ports: dict[str, int],
    probe: dict[str, Any],
    resources: tuple[str, str, str, str],
    env: list[dict[str, Any]] | None = None,
    mounts: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    cpu_req, mem_req, cpu_lim, mem_lim = resources
    container: dict[str, Any] = {
        "name": role,
        "image": IMAGE,
        "imagePullPolicy": "Always",
        "command": command,
        "envFrom": [
            {"configMapRef": {"name": "kibamail-config"}},
            # Referenced, never inlined: the operator creates kibamail-secrets
            # (docs/production.md lists its keys).
            {"secretRef": {"name": "kibamail-secrets"}},
        ],
        "env": env or [],
        "ports": [{"name": name, "containerPort": port} for name, port in ports.items()],
        "resources": {
            "requests": {"cpu": cpu_req, "memory": mem_req},
            "limits": {"cpu": cpu_lim, "memory": mem_lim},
        },
        "readinessProbe": {**probe, "periodSeconds": 10, "failureThreshold": 3},
        "livenessProbe": {**probe, "periodSeconds": 20, "failureThreshold": 6},
        "startupProbe": {**probe, "periodSeconds": 5, "failureThreshold": 60},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "state", "mountPath": "/var/lib/kibamail"},
            *(mounts or []),
        ],
    }
    if not container["env"]:
        del container["env"]
    if not container["ports"]:
        del container["ports"]
    return container


def _pod(
    role: str, container: dict[str, Any], extra_volumes: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    annotations = {}
    metrics = {"api": 8000, "tracking": 8000, "mta": 9101, "smtp-edge": 9101, "pipelines": 9102}
    if role in metrics:
        annotations = {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(metrics[role]),
            "prometheus.io/path": "/metrics",
        }
    return {
        "metadata": {"labels": _labels(role), "annotations": annotations},
        "spec": {
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 120 if role in ("mta", "smtp-edge") else 60,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "runAsGroup": 10001,
                "fsGroup": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [container],
            "volumes": [
                {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
                {"name": "state", "emptyDir": {"sizeLimit": "1Gi"}},
                *(extra_volumes or []),
            ],
        },
    }


def _http(path: str, port: int | str) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": port}}


# role: command, ports, probe, resources (cpu req, mem req, cpu limit, mem limit), replicas
ROLES: dict[str, dict[str, Any]] = {
    "api": {
        "command": ["kibamail", "api"],
        "ports": {"http": 8000},
        "probe": _http("/healthz", "http"),
        "resources": ("1", "512Mi", "2", "1Gi"),
        "replicas": 2,
        "public": True,
    },
    # The same app serving open pixels, click redirects and unsubscribes on its own host
    # name, so a tracking surge (a broadcast's opens) scales apart from the send API.
    "tracking": {
        "command": ["kibamail", "api"],
        "ports": {"http": 8000},
        "probe": _http("/healthz", "http"),
        "resources": ("500m", "384Mi", "2", "1Gi"),
        "replicas": 2,
        "public": True,
    },
    # SMTP listeners (587/465/25) for clusters that run the edge in Kubernetes too; the
    # bare-metal edge (infra/deploy/bare-metal) is the product notes' plan.
    "smtp-edge": {
        "command": ["kibamail", "mta", "--no-delivery"],
        "ports": {"submission": 2587, "smtps": 2465, "inbound": 2525, "metrics": 9101},
        "probe": _http("/metrics", "metrics"),
        "resources": ("500m", "512Mi", "2", "2Gi"),
        "replicas": 2,
    },
    "mta": {
        "command": ["kibamail", "mta", "--no-listeners"],
        "ports": {"metrics": 9101},
        "probe": _http("/metrics", "metrics"),
        "resources": ("1", "512Mi", "2", "2Gi"),
        "replicas": 2,
    },
    "webhooks": {
        "command": ["kibamail", "api", "webhooks"],
        "ports": {},
        "probe": {
            "exec": {"command": ["python", "/usr/local/bin/kibamail-probe", "api", "webhooks"]}
        },
        "resources": ("250m", "256Mi", "1", "1Gi"),
        "replicas": 2,
    },
    "broadcast-worker": {
        "command": ["kibamail", "api", "worker"],
        "ports": {},
        "probe": {
            "exec": {"command": ["python", "/usr/local/bin/kibamail-probe", "api", "worker"]}
        },
        "resources": ("500m", "512Mi", "2", "1Gi"),
        "replicas": 2,
    },
    "outbox": {
        "command": ["kibamail", "api", "outbox"],
        "ports": {},
        "probe": {
            "exec": {"command": ["python", "/usr/local/bin/kibamail-probe", "api", "outbox"]}
        },
        "resources": ("250m", "256Mi", "1", "512Mi"),
        "replicas": 2,
    },
}


def _meta(name: str, role: str) -> dict[str, Any]:
    return {"name": name, "labels": _labels(role)}


def role_workloads(role: str, spec: dict[str, Any]) -> list[dict[str, Any]]:
    name = f"kibamail-{role}"
    container = _container(
        role, spec["command"], ports=spec["ports"], probe=spec["probe"], resources=spec["resources"]
    )
    if role in ("api", "tracking"):
        container["env"] = [{"name": "KIBAMAIL_API__PORT", "value": "8000"}]
    if role in ("mta", "smtp-edge"):
        # Let in-flight SMTP sessions and deliveries finish before SIGTERM's deadline.
        container["lifecycle"] = {"preStop": {"sleep": {"seconds": 10}}}
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta(name, role),
            "spec": {
                "replicas": spec["replicas"],
                "revisionHistoryLimit": 5,
                "selector": {"matchLabels": {APP_LABEL: name}},
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
                },
                "template": _pod(role, container),
            },
        },
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": _meta(name, role),
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {APP_LABEL: name}}},
        },
    ]
    if spec["ports"]:
        service: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(name, role),
            "spec": {
                "selector": {APP_LABEL: name},
                "ports": [
                    {"name": port_name, "port": port, "targetPort": port_name}
                    for port_name, port in spec["ports"].items()
                ],
            },
        }
        if role == "smtp-edge":
            # Public SMTP: 25/587/465 outside, unprivileged ports inside the pod; Local keeps
            # the client's address (per-IP limits and AUTH lockout) without a PROXY hop.
            service["spec"]["type"] = "LoadBalancer"
            service["spec"]["externalTrafficPolicy"] = "Local"
            service["spec"]["ports"] = [
                {"name": "smtp", "port": 25, "targetPort": "inbound"},
                {"name": "submission", "port": 587, "targetPort": "submission"},
                {"name": "smtps", "port": 465, "targetPort": "smtps"},
            ]
        docs.append(service)
    if role in ("api", "tracking", "mta", "broadcast-worker"):
        docs.append(
            {
                "apiVersion": "autoscaling/v2",
                "kind": "HorizontalPodAutoscaler",
                "metadata": _meta(name, role),
                "spec": {
                    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                    "minReplicas": spec["replicas"],
                    "maxReplicas": 10,
                    "metrics": [
                        {
                            "type": "Resource",
                            "resource": {
                                "name": "cpu",
                                "target": {"type": "Utilization", "averageUtilization": 65},
                            },
                        }
                    ],
                },
            }
        )
    return docs


PIPELINE_PROCESSES = 2
PIPELINE_PORT = 2101  # flow i of pipelines.run.flow_builders() uses port + i
PIPELINE_FLOWS = 3


def pipeline_addresses(processes: int) -> str:
    """Every process's stable address (StatefulSet pod + headless service), same order."""
    import json

    return json.dumps(
        [f"kibamail-pipelines-{i}.kibamail-pipelines:{PIPELINE_PORT}" for i in range(processes)]
    )


def pipelines() -> list[dict[str, Any]]:
    role, name = "pipelines", "kibamail-pipelines"
    cluster_ports = {f"bytewax-{i}": PIPELINE_PORT + i for i in range(PIPELINE_FLOWS)}
    container = _container(
        role,
        ["kibamail", "pipelines"],
        ports={**cluster_ports, "metrics": 9102},
        probe=_http("/metrics", "metrics"),
        resources=("1", "1Gi", "2", "4Gi"),
        env=[
            {
                "name": "KIBAMAIL_PIPELINES__ADDRESSES",
                "value": pipeline_addresses(PIPELINE_PROCESSES),
            },
            # This pod's ordinal (Kubernetes >= 1.28 labels StatefulSet pods with it).
            {
                "name": "KIBAMAIL_PIPELINES__PROCESS_ID",
                "valueFrom": {
                    "fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}
                },
            },
            {"name": "KIBAMAIL_PIPELINES__RECOVERY_DIR", "value": "/recovery"},
        ],
        mounts=[{"name": "recovery", "mountPath": "/recovery"}],
    )
    # The recovery dir is shared by every process of the cluster (process 0 prepares it,
    # pipelines/README.md): one ReadWriteMany claim, not one volume per pod.
    recovery = {
        "name": "recovery",
        "persistentVolumeClaim": {"claimName": "kibamail-pipelines-recovery"},
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": _meta("kibamail-pipelines-recovery", role),
            "spec": {
                "accessModes": ["ReadWriteMany"],
                "resources": {"requests": {"storage": "20Gi"}},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(name, role),
            "spec": {
                "clusterIP": "None",
                # Peers must find each other before they are ready (the cluster forms first).
                "publishNotReadyAddresses": True,
                "selector": {APP_LABEL: name},
                "ports": [
                    {"name": port_name, "port": port, "targetPort": port_name}
                    for port_name, port in {**cluster_ports, "metrics": 9102}.items()
                ],
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": _meta(name, role),
            "spec": {
                "serviceName": name,
                "replicas": PIPELINE_PROCESSES,
                # All processes start together: a Bytewax cluster waits for every peer.
                "podManagementPolicy": "Parallel",
                "selector": {"matchLabels": {APP_LABEL: name}},
                "template": _pod(role, container, [recovery]),
            },
        },
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": _meta(name, role),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {APP_LABEL: name}}},
        },
    ]


def migration_jobs() -> list[dict[str, Any]]:
    """Schema Jobs, run before a rollout (docs/production.md: upgrades)."""
    docs = []
    jobs = {
        # Every DDL statement runs ON CLUSTER (KIBAMAIL_CLICKHOUSE__CLUSTER) and the ledger
        # (schema_migrations) is replicated on every node, so any node would do; the Job
        # still goes to shard 0, replica 0, where a release from before the _local +
        # Distributed layout kept its per-node ledger (the first run adopts it).
        "warehouse-migrate": (
            ["kibamail", "warehouse", "migrate"],
            [{"name": "KIBAMAIL_CLICKHOUSE__HOST", "value": "chi-kibamail-kibamail-0-0"}],
        ),
        "api-migrate": (["kibamail", "api", "migrate"], []),
    }
    for role, (command, env) in jobs.items():
        container = _container(
            role,
            command,
            ports={},
            probe={},
            resources=("250m", "256Mi", "1", "1Gi"),
            env=env,
        )
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            del container[probe]
        pod = _pod(role, container)
        pod["spec"]["restartPolicy"] = "OnFailure"
        docs.append(
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": _meta(f"kibamail-{role}", role),
                "spec": {"backoffLimit": 6, "ttlSecondsAfterFinished": 86400, "template": pod},
            }
        )
    return docs


def apps() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for role, spec in ROLES.items():
        docs += role_workloads(role, spec)
    return docs + pipelines() + migration_jobs()


HEADER = "# Generated by infra/deploy/k8s/generate.py; edit the generator, not this file.\n"


def dump(docs: list[dict[str, Any]]) -> str:
    return HEADER + yaml.safe_dump_all(docs, sort_keys=False, width=100)


def outputs() -> dict[Path, str]:
    return {
        BASE / "kafka-topics.yaml": dump(kafka_topics()),
        BASE / "grafana.yaml": dump(grafana_configmaps()),
        BASE / "apps.yaml": dump(apps()),
    }


def main(argv: list[str]) -> int:
    stale = []
    for path, text in outputs().items():
        if path.exists() and path.read_text() == text:
            continue
        stale.append(path.relative_to(REPO))
        if "--check" not in argv:
            path.write_text(text)
    if stale and "--check" in argv:
        print(f"generated manifests out of date: {', '.join(map(str, stale))}", file=sys.stderr)
        return 1
    print(f"written: {', '.join(map(str, stale)) or 'none (up to date)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
