"""Client data at rest is encrypted with the region's key; wrong or missing keys fail clearly."""

import json

import pyarrow as pa
import pytest

from atelier.errors import AtelierError
from atelier.protect.keys import LocalKeyStore, key_store
from atelier.protect.parquet import dataset_info, read_dataset, write_dataset
from atelier.protect.rotation import region_datasets, rotate_region

PLANTED = "Mme Planted-Secret-Value"


def _plant(settings, region="eu"):
    table = pa.table({"client_id": ["EU00000001", "EU00000002"], "note": [PLANTED, PLANTED]})
    path = settings.home / "lake" / "planted" / f"region={region}"
    write_dataset(path, table, key_store(settings, region))
    return path


def test_no_plaintext_in_any_offline_file(settings):
    _plant(settings)
    # a real value from the generated data too: one client's id and its tier
    eu = read_dataset(settings.paths.client_table("clients", "eu"), key_store(settings, "eu"))
    client_id = eu.column("client_id")[0].as_py().encode()
    files = [p for p in settings.home.rglob("*.parquet") if "catalog" not in p.parts]
    assert len(files) > 10
    for f in files:
        data = f.read_bytes()
        assert PLANTED.encode() not in data, f
        assert client_id not in data, f
        assert data[-4:] == b"PARE", f"{f} is not an encrypted-footer Parquet file"


def test_another_regions_key_cannot_read(settings):
    path = _plant(settings, "eu")
    with pytest.raises(AtelierError, match="belongs to region 'eu'; keys of region 'us' cannot read it"):
        read_dataset(path, key_store(settings, "us"))


def test_another_regions_master_key_cannot_decrypt(settings):
    """Past the label check: us's real master key, copied into eu's key file, decrypts nothing."""
    import pyarrow.parquet as pq

    path = _plant(settings, "eu")
    with pytest.raises(OSError):  # and without any key, the bytes are no Parquet anyone can read
        pq.read_table(next(path.glob("part-*.parquet")))
    us = json.loads((settings.paths.keys / "us.json").read_text())
    eu_file = settings.paths.keys / "eu.json"
    state = json.loads(eu_file.read_text())
    assert state["versions"]["1"]["key"] != us["versions"][str(us["primary"])]["key"]
    state["versions"]["1"]["key"] = us["versions"][str(us["primary"])]["key"]
    eu_file.write_text(json.dumps(state))
    with pytest.raises(AtelierError, match="wrong master key for region 'eu'"):
        read_dataset(path, key_store(settings, "eu"))


def test_wrong_key_file_and_missing_key_fail_clearly(settings):
    path = _plant(settings)
    key_file = settings.paths.keys / "eu.json"
    original = key_file.read_text()
    state = json.loads(original)
    fake = LocalKeyStore(settings.home / "other-keys", "eu")
    LocalKeyStore.init(settings.home / "other-keys", "eu")
    state["versions"]["1"]["key"] = json.loads(fake.path.read_text())["versions"]["1"]["key"]
    key_file.write_text(json.dumps(state))
    with pytest.raises(AtelierError, match="wrong master key for region 'eu'"):
        read_dataset(path, key_store(settings, "eu"))
    key_file.unlink()
    with pytest.raises(AtelierError, match="no master key for region 'eu'") as e:
        read_dataset(path, key_store(settings, "eu"))
    assert "atelier keys init" in e.value.render()


def test_rotation_rewraps_keys_without_rewriting_data(settings):
    path = _plant(settings)
    parts = sorted(path.glob("part-*.parquet"))
    before = {p: p.read_bytes() for p in parts}
    old_key = json.loads((settings.paths.keys / "eu.json").read_text())["versions"]["1"]["key"]

    result = rotate_region(settings, "eu")

    assert result["version"] == "v2" and result["retired"] == ["v1"]
    assert result["files"] >= len(region_datasets(settings, "eu"))
    assert {p: p.read_bytes() for p in parts} == before, "data files are untouched"
    assert read_dataset(path, key_store(settings, "eu")).column("note").to_pylist() == [PLANTED, PLANTED]
    # The old master key is gone: put it back as the only key and nothing decrypts.
    state = json.loads((settings.paths.keys / "eu.json").read_text())
    assert state["versions"]["1"]["state"] == "DESTROYED" and state["versions"]["1"]["key"] == ""
    state["versions"] = {"2": {**state["versions"]["2"], "key": old_key}}
    (settings.paths.keys / "eu.json").write_text(json.dumps(state))
    with pytest.raises(AtelierError, match="wrong master key"):
        read_dataset(path, key_store(settings, "eu"))


def test_rotation_interrupted_midway_leaves_everything_readable(settings, monkeypatch):
    import atelier.protect.rotation as rotation

    datasets = region_datasets(settings, "eu")
    calls = {"n": 0}
    real = rotation.rotate_dataset

    def fail_after_one(path, keys):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("power cut")
        return real(path, keys)

    monkeypatch.setattr(rotation, "rotate_dataset", fail_after_one)
    expected = {d: read_dataset(d, key_store(settings, "eu")).num_rows for d in datasets}
    assert len(datasets) >= 2 and sum(expected.values()) > 0
    with pytest.raises(RuntimeError, match="power cut"):
        rotate_region(settings, "eu")
    assert calls["n"] == 2, "one dataset re-wrapped, the next one interrupted"
    for d in datasets:
        assert read_dataset(d, key_store(settings, "eu")).num_rows == expected[d] == json.loads((d / "_dataset.json").read_text())["rows"]


def test_rotation_covers_the_event_journal(settings):
    """Events received in real time are encrypted like the lake, and rotate with it."""
    import datetime as dt

    from atelier.context import RegionContext
    from atelier.events import journal

    now = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)
    row = {"event_id": "e1", "client_id": "x", "product_id": "P0000001", "event_type": "view", "event_timestamp": now,
           "channel": None, "store_id": None, "country": None, "quantity": 1, "amount": None, "received_at": now}
    ctx = RegionContext.of(settings, "eu")
    name = journal.Journal(ctx).append(pa.Table.from_pylist([row], schema=journal.SCHEMA))
    part = journal.parts_dir(ctx) / name
    assert part in region_datasets(settings, "eu") and dataset_info(part)["encrypted"]
    rotate_region(settings, "eu")
    assert journal.read(ctx).column("event_id").to_pylist() == ["e1"]
