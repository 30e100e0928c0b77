"""The OpenAPI document is the contract: schemathesis, every check on, finds nothing against a live service.

It runs against the apac service (bearer tokens on, as in production) over real HTTP: examples,
boundary values of every constraint, and property-based fuzzing of valid and invalid requests,
for every route the document lists. The seed is printed (and random unless ATELIER_CONTRACT_SEED
is set), so a failure replays with `schemathesis run <url>/docs.json --seed <seed> ...`.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow
TOKEN = "apac-app-secret"  # the apac service's (tests/serving/conftest.py)
# Every warning but two:
# - `missing_auth`: POST /events answers 403 `other_region` to every client a fuzzer makes up (none is
#   on the region's roster), which schemathesis takes for failed authentication. Authentication
#   itself is tested (tests/serving/test_http.py: 401 without or with a wrong token).
# - `low_valid_rate` (off unless asked for): it flags an operation that accepted under a fifth of
#   the well-formed requests one scenario sent, when at least one was accepted. Most well-formed
#   requests are refused by design here: another region's country or store (403), a product or
#   store no catalog holds (404). Whether a time-boxed run happens to send one the region accepts
#   decides it: it failed a fresh clone's run on 2026-12-06 (seed 155555738, every one of 6,487
#   cases passed), and the same seed passed on the next run, where `--max-time` let other cases run.
WARNINGS = ",".join(w for w in ("missing_test_data", "base_url_mismatch", "validation_mismatch", "missing_deserializer", "unused_openapi_auth",
                                "unsupported_regex", "method_not_allowed", "constants_extraction", "unmatched_filter", "unresolvable_reference",
                                "rate_limited", "dictionary_mismatch", "timeout_units"))


def test_the_document_lists_every_status_with_its_error_body(servers):
    doc = httpx.get(f"{servers['servers']['apac'].url}/docs.json", timeout=30).json()
    assert doc["openapi"].startswith("3.1")
    recommend, similar = doc["paths"]["/recommend"]["post"], doc["paths"]["/similar"]["post"]
    assert set(recommend["responses"]) == {"200", "400", "401", "403", "415", "422"}
    assert set(similar["responses"]) == {"200", "400", "401", "403", "404", "415"}
    for route in ("/forecast", "/assortment"):
        assert set(doc["paths"][route]["post"]["responses"]) == {"200", "400", "401", "403", "404", "415", "422"}
    events = doc["paths"]["/events"]["post"]["responses"]
    assert set(events) == {"202", "400", "401", "403", "415", "503"} and "Retry-After" in events["503"]["headers"]
    assert doc["components"]["schemas"]["EventsRequest"]["properties"]["events"]["maxItems"] == 1000
    forecast = doc["components"]["schemas"]["ForecastRequest"]
    assert forecast["allOf"] == [{"oneOf": [{"required": ["product_ids"]}, {"required": ["maison"]}]}, {"oneOf": [{"required": ["country"]}, {"required": ["store_id"]}]}]
    assert "SG" in forecast["properties"]["country"]["enum"] and forecast["properties"]["maison"]["enum"]
    assert recommend["security"] == [{"bearer": []}] and "bearer" in doc["components"]["securitySchemes"]
    error = doc["components"]["schemas"]["ErrorBody"]
    assert error["required"] == ["error", "code"] and error["properties"]["detail"]["anyOf"][0]["type"] == "array"
    request = doc["components"]["schemas"]["RecommendRequest"]
    assert request["additionalProperties"] is False
    assert request["properties"]["k"]["minimum"] == 1 and request["properties"]["k"]["maximum"] == 100
    assert {"FR", "US", "SG"} <= set(request["properties"]["country"]["anyOf"][0]["enum"])
    assert request["properties"]["maison"]["anyOf"][0]["enum"], "the maisons the catalog knows"
    # the bodies the service sends are the documented ones
    log, seen = servers["servers"]["apac"].log, servers["servers"]["apac"].log.stat().st_size
    r = servers["servers"]["apac"].post("/recommend", {"client_id": "x", "k": 0}, token=TOKEN)
    assert r.status_code == 400 and r.json()["code"] == "invalid_request" and r.json()["detail"][0]["loc"] == ["k"]
    r = servers["servers"]["apac"].post("/recommend", '{"client_id": ', token=TOKEN)
    assert r.status_code == 400 and r.json()["code"] in ("invalid_request", "malformed_body") and isinstance(r.json()["error"], str)
    # in the server's log each is one line, not a fault's traceback
    written = log.read_bytes()[seen:].decode(errors="replace")
    assert written.count("client error on /recommend [POST], answered 400") == 2 and "Traceback" not in written, written[-3000:]


def test_schemathesis_finds_nothing_with_every_check_on(servers):
    seed = int(os.environ.get("ATELIER_CONTRACT_SEED") or random.randrange(1, 2**31))
    url = servers["servers"]["apac"].url
    cmd = [str(Path(sys.executable).with_name("schemathesis")), "run", f"{url}/docs.json", "--checks", "all", "--mode", "all",
           "--seed", str(seed), "--max-examples", "30", "--max-time", "40", "--header", f"Authorization: Bearer {TOKEN}",
           "--no-color", "--request-timeout", "20", "--generation-database", "none", "--warnings", WARNINGS]
    print(f"contract test seed: {seed} (replay: ATELIER_CONTRACT_SEED={seed})")
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=Path(__file__).parent)
    out = result.stdout + result.stderr
    assert result.returncode == 0 and "No issues found" in out, f"seed {seed}:\n{out[-6000:]}"
    assert "Operations:       9 selected / 9 total" in out, out[-3000:]
