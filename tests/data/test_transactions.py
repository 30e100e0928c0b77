"""A raw transaction export imports as it is, with a mapping: a slice of the real Online Retail file.

The shared data set lives beside the repository (../shared/datasets/online_retail/); its README
is kept beside the mapping in examples/online_retail/.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml

from worlds import lake_digest

from atelier.data.importer import ImportProblems
from atelier.data.transactions import import_transactions
from atelier.errors import AtelierError
from atelier.protect.keys import key_store
from atelier.protect.parquet import read_dataset

ROOT = Path(__file__).resolve().parents[2]
MAPPING = ROOT / "examples" / "online_retail" / "mapping.yaml"
SOURCE = ROOT.parent / "shared" / "datasets" / "online_retail" / "online_retail.parquet"


@pytest.fixture(scope="module")
def lines(tmp_path_factory) -> Path:
    """The first 20,000 lines (UK mostly), plus every line of a few countries that test the rules."""
    if not SOURCE.exists():
        pytest.skip(f"the shared data set is not at {SOURCE}")
    table = pq.read_table(SOURCE)
    head = table.slice(0, 20_000)
    others = table.filter(pc.is_in(table.column("country"), value_set=pa.array(["USA", "Japan", "EIRE", "RSA", "Unspecified", "Singapore"])))
    path = tmp_path_factory.mktemp("online-retail") / "slice.parquet"
    pq.write_table(pa.concat_tables([head, others]), path)
    return path


def _mapping(tmp_path: Path, **changes) -> Path:
    raw = yaml.safe_load(MAPPING.read_text())
    for dotted, value in changes.items():
        node = raw
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    path = tmp_path / "mapping.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_shipped_mapping_imports_a_slice_of_the_real_file(settings, lines):
    source = pq.read_table(lines).to_pandas()
    manifest = import_transactions(settings, lines, MAPPING)
    rules = manifest["rules"]
    assert rules["lines read"] == len(source)
    assert rules["lines dropped: unknown country"] == int((source["country"] == "Unspecified").sum())
    assert rules["lines kept for popularity only: no client"] == int((source["customer_id"].isna() & (source["unit_price"] > 0) & (source["country"] != "Unspecified") & ~source["stock_code"].isin(["POST", "DOT", "M", "C2", "D", "S", "B", "BANK CHARGES", "AMAZONFEE", "CRUK", "PADS", "m"])).sum())
    assert rules["lines kept as return events"] > 0

    # clients land in their country's region: Ireland and South Africa in eu, the US in us, Japan in apac
    homes = {}
    for region in ("eu", "us", "apac"):
        clients = read_dataset(settings.paths.client_table("clients", region), key_store(settings, region)).to_pandas()
        homes[region] = set(clients["country"])
    assert {"GB", "IE", "ZA"} <= homes["eu"] and homes["us"] == {"US"} and homes["apac"] <= {"JP", "SG", "AU"}
    assert "JP" in homes["apac"]

    eu = read_dataset(settings.paths.client_table("events", "eu"), key_store(settings, "eu")).to_pandas()
    assert set(eu["event_type"]) == {"purchase", "return"}
    returns = eu[eu["event_type"] == "return"]
    assert (returns["amount"] < 0).all() and (returns["quantity"] > 0).all()
    anonymous = eu[eu["client_id"].isna()]
    assert (anonymous["event_type"] == "purchase").sum() > 1000 and anonymous["country"].notna().all()
    assert not set(eu["product_id"]) & {"POST", "M", "DOT"}

    # anonymous lines are no client's data: the residency audit of the lake and features passes
    from atelier.features.pipeline import compute_features
    from atelier.protect.audit import audit_residency

    for region in ("eu", "us", "apac"):
        compute_features(settings, region)
    offline = [f for f in audit_residency(settings).findings if f.place.startswith("offline")]
    assert offline == []

    products = read_dataset(settings.paths.catalog("products"), None).to_pandas().set_index("product_id")
    assert products.loc["85123A", "description"] == "WHITE HANGING HEART T-LIGHT HOLDER"
    assert products.loc["85123A", "price"] == pytest.approx(source.loc[(source["stock_code"] == "85123A") & (source["quantity"] > 0), "unit_price"].median())
    assert (products["maison"] == "online-retail").all()


STRICT = {
    "negative price": ({"rules.price_not_positive": "error"}, "unit prices that are zero, negative or missing (rule price_not_positive=error)"),
    "missing client": ({"rules.anonymous": "error"}, "lines without a client id (rule anonymous=error)"),
    "unknown country": ({"rules.unknown_country": "error"}, "'Unspecified'"),
    "missing column": ({"columns.client_id": "customer"}, "the mapping names column(s) the file does not have: customer"),
    "not a mapping": ({"rules.anonymous": "ignore"}, "rules.anonymous: Input should be 'popularity_only', 'drop' or 'error'"),
}


@pytest.mark.parametrize("case", list(STRICT))
def test_bad_input_under_strict_rules_is_refused_with_nothing_written(settings, lines, tmp_path, case):
    changes, message = STRICT[case]
    before = lake_digest(settings)
    with pytest.raises(AtelierError) as e:
        import_transactions(settings, lines, _mapping(tmp_path, **changes))
    text = e.value.render()
    assert message in text, text
    if isinstance(e.value, ImportProblems):
        assert "nothing was written" in text and "row " in text
    assert lake_digest(settings) == before
