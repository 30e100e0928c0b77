"""Residency and exposure rules for terraform/, checked on the parsed HCL (python-hcl2).

Terraform cannot download providers here, so `validate` and `plan` cannot run; these rules read
the configuration itself. Each returns a list of violations (empty when the rule holds).
"""

from __future__ import annotations

import re
from pathlib import Path

import hcl2

LOCATED = {  # resource types that live in one location, and the attribute naming it
    "google_storage_bucket": "location",
    "google_bigquery_dataset": "location",
    "google_redis_instance": "region",
    "google_artifact_registry_repository": "location",
    "google_kms_key_ring": "location",
    "google_container_cluster": "location",
    "google_container_node_pool": "location",
    "google_compute_subnetwork": "region",
    "google_compute_router": "region",
    "google_compute_router_nat": "region",
}
REGIONAL = {"${var.location}", "${upper(var.location)}", "${lower(var.location)}"}
CMEK = {  # data store -> where its key is named
    "google_storage_bucket": ("encryption", "default_kms_key_name"),
    "google_bigquery_dataset": ("default_encryption_configuration", "kms_key_name"),
    "google_redis_instance": (None, "customer_managed_key"),
    "google_artifact_registry_repository": (None, "kms_key_name"),
}


def _clean(value):
    if isinstance(value, str):
        return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items() if k not in ("__is_block__", "__comments__")}
    return value


def parse(text: str) -> dict:
    import io

    return _clean(hcl2.load(io.StringIO(text)))


def parse_dir(path: Path) -> dict:
    merged: dict = {}
    for f in sorted(Path(path).glob("*.tf")):
        for key, blocks in parse(f.read_text()).items():
            merged.setdefault(key, []).extend(blocks if isinstance(blocks, list) else [blocks])
    return merged


def resources(parsed: dict):
    for block in parsed.get("resource", []):
        for rtype, named in block.items():
            for name, body in named.items():
                yield rtype, name, body


def _first(body: dict, block: str | None, attr: str):
    if block is None:
        return body.get(attr)
    inner = body.get(block) or [{}]
    return inner[0].get(attr)


def in_region(parsed: dict) -> list[str]:
    bad = []
    for rtype, name, body in resources(parsed):
        attr = LOCATED.get(rtype)
        if attr and body.get(attr) not in REGIONAL:
            bad.append(f"{rtype}.{name}: {attr} is {body.get(attr)!r}, not the region's location (var.location)")
    return bad


def customer_managed_keys(parsed: dict) -> list[str]:
    bad = []
    rings = {n for t, n, b in resources(parsed) if t == "google_kms_key_ring" and b.get("location") in REGIONAL}
    keys = {n for t, n, b in resources(parsed) if t == "google_kms_crypto_key" and any(f"google_kms_key_ring.{r}." in str(b.get("key_ring")) for r in rings)}
    for rtype, name, body in resources(parsed):
        if rtype in CMEK:
            ref = _first(body, *CMEK[rtype])
            match = re.match(r"\$\{google_kms_crypto_key\.(\w+)[\[.]", str(ref))
            if not match:
                bad.append(f"{rtype}.{name}: no customer-managed key")
            elif match.group(1) not in keys:
                bad.append(f"{rtype}.{name}: key {match.group(1)} is not from a key ring in the region")
    return bad


def secrets_stay(parsed: dict) -> list[str]:
    """Secret Manager secrets: replicated by hand, in the region's location only, each replica under
    a key of the region's key ring (automatic replication would copy them to other locations)."""
    bad = []
    rings = {n for t, n, b in resources(parsed) if t == "google_kms_key_ring" and b.get("location") in REGIONAL}
    keys = {n for t, n, b in resources(parsed) if t == "google_kms_crypto_key" and any(f"google_kms_key_ring.{r}." in str(b.get("key_ring")) for r in rings)}
    for rtype, name, body in resources(parsed):
        if rtype != "google_secret_manager_secret":
            continue
        where = f"{rtype}.{name}"
        user = ((body.get("replication") or [{}])[0].get("user_managed") or [None])[0]
        if not user:
            bad.append(f"{where}: not replicated by hand (automatic replication leaves the region)")
            continue
        for replica in user.get("replicas", []):
            if replica.get("location") not in REGIONAL:
                bad.append(f"{where}: a replica in {replica.get('location')!r}, not the region's location")
            ref = ((replica.get("customer_managed_encryption") or [{}])[0]).get("kms_key_name")
            match = re.match(r"\$\{google_kms_crypto_key\.(\w+)[\[.]", str(ref))
            if not match or match.group(1) not in keys:
                bad.append(f"{where}: a replica without a key of the region's key ring")
    return bad


def nothing_public(parsed: dict) -> list[str]:
    bad = []
    text = repr(parsed)
    for who in ("allUsers", "allAuthenticatedUsers"):
        if who in text:
            bad.append(f"{who} is granted access somewhere")
    for rtype, name, body in resources(parsed):
        where = f"{rtype}.{name}"
        if rtype == "google_storage_bucket":
            if body.get("public_access_prevention") != "enforced" or body.get("uniform_bucket_level_access") is not True:
                bad.append(f"{where}: public access is not prevented")
        if rtype == "google_container_cluster":
            private = (body.get("private_cluster_config") or [{}])[0]
            if not (private.get("enable_private_nodes") is True and private.get("enable_private_endpoint") is True):
                bad.append(f"{where}: nodes or control plane have public IPs")
        if rtype == "google_redis_instance" and body.get("connect_mode") != "PRIVATE_SERVICE_ACCESS":
            bad.append(f"{where}: not on private service access")
        if "access_config" in repr(body):
            bad.append(f"{where}: has a public IP (access_config)")
        if rtype == "google_compute_address" and body.get("address_type", "EXTERNAL") == "EXTERNAL":
            bad.append(f"{where}: external address")
        if rtype == "google_compute_firewall" and body.get("allow") and "0.0.0.0/0" in body.get("source_ranges", []):
            bad.append(f"{where}: allows traffic from anywhere")
    return bad


def gpu_pool(parsed: dict) -> list[str]:
    for rtype, _, body in resources(parsed):
        if rtype == "google_container_node_pool":
            config = repr(body.get("node_config"))
            if "guest_accelerator" in config and "nvidia" in repr(parsed.get("variable", [])) + config:
                return []
    return ["no GKE node pool with an NVIDIA GPU"]


def secrets_mounted(parsed: dict) -> list[str]:
    """Every cluster runs GKE's Secret Manager add-on: the manifests' SecretProviderClass
    (provider `gke`, driver secrets-store-gke.csi.k8s.io) needs it, or a pod never starts."""
    bad = []
    for rtype, name, body in resources(parsed):
        if rtype == "google_container_cluster" and ((body.get("secret_manager_config") or [{}])[0]).get("enabled") is not True:
            bad.append(f"{rtype}.{name}: the Secret Manager add-on is not enabled")
    return bad


def all_rules(parsed: dict) -> list[str]:
    return in_region(parsed) + customer_managed_keys(parsed) + secrets_stay(parsed) + secrets_mounted(parsed) + nothing_public(parsed) + gpu_pool(parsed)
