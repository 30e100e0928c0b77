"""Kubernetes manifests for a region's bento on its GKE cluster, from the region table, the bento and Terraform's outputs.

`atelier deploy manifests -r eu --outputs tf-eu.json --out DIR` writes one file per object, for
one bento (CPU or GPU):

* a ServiceAccount bound to the region's `serving` Google service account (Workload Identity:
  no key anywhere);
* a SecretProviderClass (the Secret Manager CSI driver, GKE's add-on): the API tokens and the
  Memorystore AUTH string are read from Secret Manager when a pod starts and mirrored into a
  Kubernetes Secret that the pod's environment references. No value is ever in a manifest;
* a Deployment: the bento's image from the region's Artifact Registry, probes on `/readyz`
  (readiness: the online store answers) and `/livez`, a startup probe for the model load,
  resource requests, the GPU pool's node selector, toleration and `nvidia.com/gpu: 1` for the
  GPU variant, spread over zones;
* a Service (an internal load balancer: apps reach it inside the region's network);
* a HorizontalPodAutoscaler (CPU) and a PodDisruptionBudget (one pod at least, always).

Everything names the region's own resources (Terraform's outputs for that region, checked to be
that region's), so an eu manifest cannot point at a us resource.
"""

from __future__ import annotations

from pathlib import Path

from atelier.errors import AtelierError
from atelier.regions import get_region, region_codes

PORT = 3000
NAMESPACE = "atelier"
REQUESTS = {"cpu": {"cpu": "2", "memory": "4Gi"}, "gpu": {"cpu": "4", "memory": "16Gi"}}
LIMITS = {"cpu": {"memory": "6Gi"}, "gpu": {"memory": "24Gi", "nvidia.com/gpu": "1"}}
SECRETS = {"api-tokens": "ATELIER_API_TOKENS", "redis-auth": "ATELIER_REDIS__{REGION}__PASSWORD"}


def read_outputs(path: Path, region: str) -> dict:
    """The region module's outputs from `terraform output -json` of terraform/envs/<region>, with
    what the manifests need, refused unless they are of `region`'s location. The file's shape and
    the location rule are atelier.features.cloud's, as for `features cloud-config` and `data load`."""
    from atelier.features.cloud import check_region, read_module_outputs

    values = read_module_outputs(path)
    needed = ("artifact_registry", "gke_cluster", "service_accounts")
    missing = [k for k in needed if k not in values]
    if missing:
        raise AtelierError(f"Terraform outputs lack {', '.join(missing)}", where=str(path), fix="apply terraform/envs/<region> (modules/region writes them)")
    check_region(region, values)
    return values


def manifests(region: str, bento: str, outputs: dict, *, gpu: bool = False, replicas: int = 2, max_replicas: int = 10) -> list[dict]:
    """The objects for `bento` ("name:version") in `region`."""
    r = get_region(region)
    name, _, version = bento.partition(":")
    if not version:
        raise AtelierError(f"bento {bento!r} has no version", fix="give name:version (atelier build prints it)")
    registry = outputs["artifact_registry"]
    project = registry.split("/")[1]
    sa_email = outputs["service_accounts"]["serving"]
    pool = "gpu" if gpu else "cpu"
    labels = {"app": name, "app.kubernetes.io/part-of": "atelier", "atelier/region": r.code, "atelier/accelerator": pool}
    selector = {"app": name}
    secrets = f"{name}-secrets"
    meta = lambda n, **extra: {"name": n, "namespace": NAMESPACE, "labels": labels, **extra}  # noqa: E731
    env = [
        {"name": "ATELIER_REGION", "value": r.code},
        {"name": "ATELIER_HOME", "value": "/var/lib/atelier"},
        {"name": "ATELIER_ONLINE_STORE", "value": "redis"},
        {"name": "ATELIER_OFFLINE_STORE", "value": "bigquery"},
        {"name": "ATELIER_KMS", "value": "gcp"},
        {"name": "ATELIER_GCP_PROJECT", "value": project},
        {"name": f"ATELIER_REDIS__{r.code.upper()}__HOST", "value": str(outputs["redis_host"])},
        {"name": f"ATELIER_REDIS__{r.code.upper()}__PORT", "value": str(outputs["redis_port"])},
        {"name": f"ATELIER_REDIS__{r.code.upper()}__TLS", "value": "true"},
        *[{"name": var.format(REGION=r.code.upper()), "valueFrom": {"secretKeyRef": {"name": secrets, "key": key}}} for key, var in SECRETS.items()],
    ]
    container = {
        "name": "bento",
        "image": f"{registry}/{name}:{version}",
        "ports": [{"name": "http", "containerPort": PORT}],
        "env": env,
        "resources": {"requests": REQUESTS[pool], "limits": LIMITS[pool]},
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": PORT}, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {"httpGet": {"path": "/livez", "port": PORT}, "periodSeconds": 10, "failureThreshold": 3},
        "startupProbe": {"httpGet": {"path": "/livez", "port": PORT}, "periodSeconds": 10, "failureThreshold": 30},
        "volumeMounts": [{"name": "secrets", "mountPath": "/var/secrets/atelier", "readOnly": True}, {"name": "home", "mountPath": "/var/lib/atelier"}],
        "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
    }
    pod = {
        "serviceAccountName": "atelier-serving",
        "nodeSelector": {"cloud.google.com/gke-nodepool": pool},
        "containers": [container],
        "volumes": [{"name": "secrets", "csi": {"driver": "secrets-store-gke.csi.k8s.io", "readOnly": True, "volumeAttributes": {"secretProviderClass": secrets}}},
                    {"name": "home", "emptyDir": {}}],
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": selector}}],
        "terminationGracePeriodSeconds": 40,
    }
    if gpu:
        pod["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    secret_list = "\n".join(f'- resourceName: "projects/{project}/secrets/atelier-{r.code}-{key}/versions/latest"\n  path: "{key}"' for key in SECRETS)
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta("atelier-serving", annotations={"iam.gke.io/gcp-service-account": sa_email})},
        {"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass", "metadata": meta(secrets),
         "spec": {"provider": "gke", "parameters": {"secrets": secret_list},
                  "secretObjects": [{"secretName": secrets, "type": "Opaque", "data": [{"objectName": key, "key": key} for key in SECRETS]}]}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta(name),
         "spec": {"replicas": replicas, "selector": {"matchLabels": selector},
                  "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                  "template": {"metadata": {"labels": {**labels, **selector}, "annotations": {"atelier/bento": bento}}, "spec": pod}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": meta(name, annotations={"networking.gke.io/load-balancer-type": "Internal"}),
         "spec": {"type": "LoadBalancer", "selector": selector, "ports": [{"name": "http", "port": 80, "targetPort": PORT}]}},
        {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": meta(name),
         "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}, "minReplicas": replicas, "maxReplicas": max_replicas,
                  "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}]}},
        {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta(name), "spec": {"minAvailable": 1, "selector": {"matchLabels": selector}}},
    ]


def foreign_references(objects: list[dict], region: str) -> list[str]:
    """Strings of `objects` that name another region's resources (its code as a name part, or its location)."""
    others = [get_region(o) for o in region_codes() if o != region]
    marks = [m for o in others for m in (o.location, f"atelier-{o.code}", f"atelier/{o.code}", f"ATELIER_REDIS__{o.code.upper()}__")]
    found = []

    def walk(x):
        if isinstance(x, dict):
            for k, v in x.items():
                walk(k)
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
        elif isinstance(x, str) and any(m in x for m in marks):
            found.append(x)

    walk(objects)
    return found


def write(objects: list[dict], out: Path) -> list[Path]:
    """One YAML file per object, named `<kind>-<name>.yaml`, written atomically."""
    import yaml

    from atelier.io import write_bytes_atomic

    out = Path(out)
    paths = []
    for obj in objects:
        path = out / f"{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"
        write_bytes_atomic(path, yaml.safe_dump(obj, sort_keys=False).encode())
        paths.append(path)
    return paths
