"""GKE manifests per region: valid Kubernetes (offline, kubernetes-validate), the region's own
resources only, a GPU where the bento wants one, and no secret value anywhere.

Google Cloud cannot be reached from here: Terraform's outputs are a stand-in written by the test
in the shape `terraform output -json` gives (the region module's outputs.tf), with a made-up AUTH
string that must never reach a manifest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from atelier.deploy import manifests as m
from atelier.errors import AtelierError
from atelier.regions import get_region, region_codes

K8S = "1.33"  # GKE's REGULAR channel
AUTH = "made-up-auth-string-7f3a"
TOKENS = '{"clienteling": "made-up-token-91c2"}'


def _outputs(tmp_path: Path, region: str) -> Path:
    """What `terraform output -json` of terraform/envs/<region> gives (a stand-in: no Google Cloud here)."""
    loc = get_region(region).location
    values = {
        "location": loc, "bucket": f"atelier-{region}-data-p", "bigquery_dataset": "atelier",
        "redis_host": "10.20.0.3", "redis_port": 6378, "redis_auth_string": AUTH,
        "artifact_registry": f"{loc}-docker.pkg.dev/group-prod/atelier-{region}", "gke_cluster": f"atelier-{region}",
        "kms_keys": {"data": f"projects/group-prod/locations/{loc}/keyRings/atelier-{region}/cryptoKeys/data"},
        "service_accounts": {"serving": f"atelier-{region}-serving@group-prod.iam.gserviceaccount.com",
                             "platform": f"atelier-{region}-platform@group-prod.iam.gserviceaccount.com"},
    }
    path = tmp_path / f"tf-{region}.json"
    path.write_text(json.dumps({"region": {"sensitive": True, "type": ["object", {}], "value": values}}))  # the env root's one output, the module
    return path


def _objects(tmp_path, region, gpu=False):
    values = m.read_outputs(_outputs(tmp_path, region), region)
    name = f"atelier-recommender-{region}" + ("-gpu" if gpu else "")
    return m.manifests(region, f"{name}:abc123", values, gpu=gpu)


@pytest.mark.parametrize("region", region_codes())
@pytest.mark.parametrize("gpu", [False, True], ids=["cpu", "gpu"])
def test_manifests_validate_offline_and_name_only_their_region(tmp_path, region, gpu):
    objects = _objects(tmp_path, region, gpu)
    kinds = {o["kind"] for o in objects}
    assert kinds == {"ServiceAccount", "SecretProviderClass", "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    for obj in objects:
        if obj["kind"] == "SecretProviderClass":  # a custom resource (the Secret Manager CSI driver): no schema ships with Kubernetes
            assert obj["spec"]["provider"] == "gke" and all(e["objectName"] in m.SECRETS for e in obj["spec"]["secretObjects"][0]["data"])
            continue
        kubernetes_validate.validate(obj, K8S, strict=True)
    assert m.foreign_references(objects, region) == []
    text = yaml.safe_dump_all(objects)
    assert get_region(region).location in text
    # the check itself sees another region's name
    other = next(r for r in region_codes() if r != region)
    planted = json.loads(json.dumps(objects).replace(f"atelier-{region}-serving", f"atelier-{other}-serving"))
    assert m.foreign_references(planted, region)


def test_the_deployment_probes_requests_and_gpu(tmp_path):
    cpu = {o["kind"]: o for o in _objects(tmp_path, "eu")}
    gpu = {o["kind"]: o for o in _objects(tmp_path, "eu", gpu=True)}
    for objects, pool in ((cpu, "cpu"), (gpu, "gpu")):
        pod = objects["Deployment"]["spec"]["template"]["spec"]
        c = pod["containers"][0]
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz" and c["livenessProbe"]["httpGet"]["path"] == "/livez"
        assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
        assert pod["nodeSelector"] == {"cloud.google.com/gke-nodepool": pool}
        assert c["image"].startswith("europe-west9-docker.pkg.dev/group-prod/atelier-eu/atelier-recommender-eu")
        assert objects["ServiceAccount"]["metadata"]["annotations"]["iam.gke.io/gcp-service-account"] == "atelier-eu-serving@group-prod.iam.gserviceaccount.com"
        assert objects["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == objects["Deployment"]["metadata"]["name"]
        assert objects["PodDisruptionBudget"]["spec"]["minAvailable"] == 1
    gpod = gpu["Deployment"]["spec"]["template"]["spec"]
    assert gpod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in gpod["tolerations"]
    assert "nvidia.com/gpu" not in str(cpu["Deployment"]) and "tolerations" not in cpu["Deployment"]["spec"]["template"]["spec"]


def test_no_secret_value_reaches_a_manifest_and_outputs_of_another_region_are_refused(tmp_path):
    env = {**os.environ, "ATELIER_HOME": str(tmp_path / "home"), "ATELIER_API_TOKENS": TOKENS, "ATELIER_REDIS__EU__PASSWORD": AUTH}
    out = tmp_path / "manifests"
    cmd = [str(Path(sys.executable).with_name("atelier")), "deploy", "manifests", "-r", "eu", "--outputs", str(_outputs(tmp_path, "eu")),
           "--out", str(out), "--bento", "atelier-recommender-eu:abc123"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    files = sorted(out.glob("*.yaml"))
    assert len(files) == 6
    text = "".join(f.read_text() for f in files)
    assert AUTH not in text and "made-up-token" not in text
    deployment = yaml.safe_load((out / "deployment-atelier-recommender-eu.yaml").read_text())
    env_vars = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env_vars["ATELIER_API_TOKENS"]["valueFrom"]["secretKeyRef"]["key"] == "api-tokens"
    assert env_vars["ATELIER_REDIS__EU__PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "redis-auth"
    assert all("value" not in e for e in env_vars.values() if e["name"] in ("ATELIER_API_TOKENS", "ATELIER_REDIS__EU__PASSWORD"))

    wrong = subprocess.run([*cmd[:6], str(_outputs(tmp_path, "us")), *cmd[7:]], env=env, capture_output=True, text=True, timeout=120)
    assert wrong.returncode == 1 and "terraform says region 'eu' is in us-central1" in wrong.stdout + wrong.stderr
    with pytest.raises(AtelierError, match="no version"):
        m.manifests("eu", "atelier-recommender-eu", m.read_outputs(_outputs(tmp_path, "eu"), "eu"))


def test_the_secrets_referenced_are_those_terraform_creates():
    import hcl2

    tf = hcl2.load(open(Path(__file__).resolve().parents[2] / "terraform" / "modules" / "region" / "secrets.tf"))
    created = set(tf["locals"][0]["secrets"])
    assert created == set(m.SECRETS)
    unquote = lambda d: {k.strip('"'): v for k, v in d.items()}  # noqa: E731  (python-hcl2 keeps the quotes of block labels)
    blocks = {k: unquote(v) for block in tf["resource"] for k, v in unquote(block).items()}
    secret = blocks["google_secret_manager_secret"]["serving"]
    assert secret["secret_id"].strip('"') == "${local.name}-${each.key}"  # atelier-<region>-<key>, as the manifests name them


def test_unusable_terraform_outputs_are_refused_with_the_fix(tmp_path):
    with pytest.raises(AtelierError, match="cannot read the Terraform outputs") as e:
        m.read_outputs(tmp_path / "absent.json", "eu")
    assert "output -json" in e.value.fix
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(AtelierError, match="cannot read the Terraform outputs"):
        m.read_outputs(tmp_path / "bad.json", "eu")
    (tmp_path / "flat.json").write_text(json.dumps({"location": {"value": "europe-west9"}}))  # outputs of the module, not of the env root
    with pytest.raises(AtelierError, match="not the output of a terraform/envs/<region> root"):
        m.read_outputs(tmp_path / "flat.json", "eu")
    short = {"region": {"value": {"location": "europe-west9", "bucket": "b", "bigquery_dataset": "atelier", "redis_host": "h", "redis_port": 1}}}
    (tmp_path / "short.json").write_text(json.dumps(short))
    with pytest.raises(AtelierError, match="lack artifact_registry"):
        m.read_outputs(tmp_path / "short.json", "eu")
