"""terraform/ is formatted, passes checkov, and keeps every regional resource in its region.

Terraform cannot download providers on this machine, so `init`, `validate` and `terraform test`
cannot run; these checks read the configuration instead. Planted violations prove each rule can
fail.
"""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from atelier.regions import all_regions
from policy import all_rules, customer_managed_keys, gpu_pool, in_region, nothing_public, parse, parse_dir, resources, secrets_mounted, secrets_stay

ROOT = Path(__file__).resolve().parents[2] / "terraform"
MODULE = ROOT / "modules" / "region"


@pytest.fixture(scope="module")
def module():
    return parse_dir(MODULE)


def test_terraform_fmt():
    terraform = shutil.which("terraform")
    if not terraform:  # no registry serves the binary: a skip, reported as one, never a pass
        pytest.skip("terraform is not on PATH (no package registry serves it): `terraform fmt -check` not run")
    r = subprocess.run([terraform, "fmt", "-check", "-recursive", str(ROOT)], capture_output=True, text=True)
    assert r.returncode == 0, f"unformatted: {r.stdout}{r.stderr}"


def test_checkov_has_no_failed_check():
    checkov = shutil.which("checkov")
    assert checkov, "checkov is installed in .venv-tools by `make tools` (make test puts it on PATH)"
    r = subprocess.run([checkov, "-d", str(ROOT), "--framework", "terraform", "--quiet", "--compact", "--skip-download", "--output", "json"], capture_output=True, text=True, timeout=600)
    report = json.loads(r.stdout)
    summary = report["summary"] if isinstance(report, dict) else report[0]["summary"]
    assert summary["failed"] == 0, r.stdout[-3000:]
    assert summary["passed"] > 50
    # every skip carries its reason
    for f in MODULE.glob("*.tf"):
        for line in f.read_text().splitlines():
            if "checkov:skip=" in line:
                assert len(line.split(":", 2)[-1].strip()) > 20, line


def test_module_follows_every_rule(module):
    assert all_rules(module) == []


def test_roots_take_their_location_from_the_region_table():
    table = {r.code: r for r in all_regions()}
    assert table["eu"].location in ("europe-west3", "europe-west9")  # Frankfurt or Paris
    assert table["us"].location.startswith("us-")
    assert table["apac"].location == "asia-southeast1"  # Singapore
    for code in table:
        root = parse_dir(ROOT / "envs" / code)
        module = root["module"][0]["region"]
        assert root["locals"][0]["region"] == code
        assert "regions.json" in root["locals"][0]["table"]
        assert module["source"] == "../../modules/region"
        assert module["location"] == "${local.table.location}" and module["region_code"] == "${local.region}"
        backend = root["terraform"][0]["backend"][0]["gcs"]
        assert backend["prefix"] == f"atelier/{code}"


def _planted(replace: str, by: str) -> dict:
    text = "\n".join(f.read_text() for f in sorted(MODULE.glob("*.tf")))
    assert replace in text
    return parse(text.replace(replace, by, 1))


def test_planted_bucket_in_the_wrong_region_fails():
    bad = in_region(_planted('location                    = upper(var.location)', 'location                    = "US"'))
    assert bad and "google_storage_bucket.data" in bad[0]


def test_planted_dataset_without_customer_managed_key_fails():
    block = 'default_encryption_configuration {\n    kms_key_name = google_kms_crypto_key.key["bigquery"].id\n  }'
    bad = customer_managed_keys(_planted(block, ""))
    assert bad == ["google_bigquery_dataset.offline: no customer-managed key"]


def test_planted_key_from_another_location_fails():
    bad = customer_managed_keys(_planted('resource "google_kms_key_ring" "region" {\n  project  = var.project_id\n  name     = local.name\n  location = var.location', 'resource "google_kms_key_ring" "region" {\n  project  = var.project_id\n  name     = local.name\n  location = "us"'))
    assert len(bad) >= 4 and all("not from a key ring in the region" in b for b in bad)


def test_planted_public_bucket_fails():
    assert nothing_public(_planted('public_access_prevention    = "enforced"', 'public_access_prevention    = "inherited"')) == [
        "google_storage_bucket.data: public access is not prevented"]
    public_member = 'resource "google_storage_bucket_iam_member" "world" {\n  bucket = google_storage_bucket.data.name\n  role   = "roles/storage.objectViewer"\n  member = "allUsers"\n}\n'
    text = "\n".join(f.read_text() for f in sorted(MODULE.glob("*.tf"))) + public_member
    assert nothing_public(parse(text)) == ["allUsers is granted access somewhere"]


def test_planted_public_cluster_and_missing_gpu_pool_fail():
    assert nothing_public(_planted("enable_private_nodes    = true", "enable_private_nodes    = false")) == [
        "google_container_cluster.bentos: nodes or control plane have public IPs"]
    assert gpu_pool(_planted('dynamic "guest_accelerator"', 'dynamic "other_thing"')) == ["no GKE node pool with an NVIDIA GPU"]


def test_planted_cluster_without_the_secret_manager_add_on_fails(module):
    """The manifests mount the services' secrets through GKE's Secret Manager add-on, which each cluster enables."""
    assert secrets_mounted(module) == []
    assert secrets_mounted(_planted("secret_manager_config {\n    enabled = true", "secret_manager_config {\n    enabled = false")) == [
        "google_container_cluster.bentos: the Secret Manager add-on is not enabled"]


def test_the_services_secrets_stay_in_the_region_under_its_key(module):
    """The secrets `atelier deploy manifests` references exist, readable by the serving identity only."""
    secrets = {n: b for t, n, b in resources(module) if t == "google_secret_manager_secret"}
    assert list(secrets) == ["serving"] and secrets["serving"]["secret_id"] == "${local.name}-${each.key}"
    grants = [b for t, n, b in resources(module) if t == "google_secret_manager_secret_iam_member"]
    assert [g["member"] for g in grants] == ["serviceAccount:${google_service_account.serving.email}"]
    assert [g["role"] for g in grants] == ["roles/secretmanager.secretAccessor"]
    replica = 'location = var.location\n        customer_managed_encryption {'
    assert secrets_stay(_planted(replica, 'location = "us-central1"\n        customer_managed_encryption {')) == [
        "google_secret_manager_secret.serving: a replica in 'us-central1', not the region's location"]
    assert secrets_stay(_planted('kms_key_name = google_kms_crypto_key.key["secrets"].id', 'kms_key_name = "projects/x/locations/us/keyRings/k/cryptoKeys/c"')) == [
        "google_secret_manager_secret.serving: a replica without a key of the region's key ring"]
