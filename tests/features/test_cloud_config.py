"""The cloud configuration: filled from Terraform outputs, read by Feast, BigQuery in the region.

Google Cloud cannot be reached from where the tests run: the Terraform outputs are a stand-in
with the shape `terraform output -json` gives, and Feast only parses the configuration and the
definitions (no query is sent).
"""

import json

import pytest
import yaml
from feast import BigQuerySource
from feast.repo_config import RepoConfig

from atelier.errors import AtelierError
from atelier.features.cloud import cloud_config, module_outputs, write_cloud_config
from atelier.features.repo import parse_definitions

STAND_IN = {"region": {"sensitive": True, "type": ["object", {}], "value": {
    "location": "europe-west9", "bucket": "group-eu-atelier-eu", "bigquery_dataset": "atelier",
    "redis_host": "10.20.0.3", "redis_port": 6378, "redis_auth_string": "never-printed",
}}}


def test_yaml_from_terraform_outputs_is_a_valid_feast_config(tmp_path):
    (tmp_path / "eu.json").write_text(json.dumps(STAND_IN))
    yaml_path, env_path = write_cloud_config("eu", tmp_path / "eu.json", "group-eu", tmp_path / "out")
    raw = yaml.safe_load(yaml_path.read_text())
    assert raw["offline_store"] == {"type": "bigquery", "project_id": "group-eu", "dataset": "atelier", "location": "europe-west9"}
    assert raw["registry"]["path"] == "gs://group-eu-atelier-eu/feast/registry.db"
    assert "ssl=true" in raw["online_store"]["connection_string"] and "${ATELIER_REDIS__EU__PASSWORD}" in raw["online_store"]["connection_string"]
    assert "never-printed" not in yaml_path.read_text() + env_path.read_text()
    config = RepoConfig(**raw)
    assert config.offline_store.location == "europe-west9"
    assert "ATELIER_REDIS__EU__MEMORYSTORE=true" in env_path.read_text()


def test_outputs_of_another_region_are_refused():
    with pytest.raises(AtelierError, match="terraform says region 'apac' is in europe-west9"):
        cloud_config("apac", module_outputs(STAND_IN), "group-apac")
    with pytest.raises(AtelierError, match="not the output of a terraform/envs"):
        module_outputs({"something": {}})


@pytest.mark.parametrize("content, message", [
    ("{not json", "cannot read the Terraform outputs"),
    (json.dumps({"something": {}}), "not the output of a terraform/envs"),
    (json.dumps({"region": {"value": {k: v for k, v in STAND_IN["region"]["value"].items() if k != "redis_host"}}}), "terraform outputs lack redis_host"),
    (json.dumps(STAND_IN).replace("europe-west9", "us-central1"), "terraform says region 'eu' is in us-central1"),
])
def test_bad_outputs_leave_the_previous_configuration_intact(tmp_path, content, message):
    (tmp_path / "good.json").write_text(json.dumps(STAND_IN))
    out = tmp_path / "out"
    written = write_cloud_config("eu", tmp_path / "good.json", "group-eu", out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (tmp_path / "bad.json").write_text(content)
    with pytest.raises(AtelierError, match=message) as e:
        write_cloud_config("eu", tmp_path / "bad.json", "group-eu", out)
    assert e.value.fix, "the error says what to do"
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before and len(before) == len(written)
    with pytest.raises(AtelierError, match="cannot read the Terraform outputs"):
        write_cloud_config("eu", tmp_path / "missing.json", "group-eu", out)


def test_definitions_read_bigquery_tables_in_the_cloud(settings, monkeypatch):
    monkeypatch.setenv("ATELIER_OFFLINE_STORE", "bigquery")
    contents = parse_definitions(settings)
    sources = {s.name: s for s in contents.data_sources}
    assert isinstance(sources["client_activity_source"], BigQuerySource)
    assert sources["client_activity_source"].table == "atelier.client_activity"
    assert sources["clients_source"].table == "atelier.clients"
    assert sources["lumiere_de_grasse_engagement_source"].table == "atelier.maison_engagement_lumiere_de_grasse"
    monkeypatch.setenv("ATELIER_OFFLINE_STORE", "parquet")
    assert type(next(s for s in parse_definitions(settings).data_sources if s.name == "clients_source")).__name__ == "AtelierSource"
