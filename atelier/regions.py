"""The region table: which countries each region serves and where its cloud resources live.

Client data never leaves its region, so every stage takes the region as a parameter and asks this
module where a client belongs. The table itself is `regions.json`, read by Terraform too, so the
Python code and the infrastructure can never disagree about a location.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

from atelier.errors import AtelierError


@dataclass(frozen=True)
class Region:
    """One data-residency region.

    `client_id_prefix` is the contract with the group's client master: client ids are minted per
    region with this prefix, which lets a regional service refuse another region's client without
    holding any of that region's data.
    """

    code: str
    name: str
    location: str
    location_name: str
    client_id_prefix: str
    countries: tuple[str, ...]


@cache
def _table() -> dict[str, Region]:
    raw = json.loads(resources.files("atelier").joinpath("regions.json").read_text())
    return {
        code: Region(
            code=code,
            name=spec["name"],
            location=spec["location"],
            location_name=spec["location_name"],
            client_id_prefix=spec["client_id_prefix"],
            countries=tuple(spec["countries"]),
        )
        for code, spec in raw["regions"].items()
    }


def all_regions() -> list[Region]:
    return list(_table().values())


def region_codes() -> list[str]:
    return list(_table())


def get_region(code: str) -> Region:
    try:
        return _table()[code]
    except KeyError:
        raise AtelierError(
            f"unknown region {code!r}",
            fix=f"use one of: {', '.join(region_codes())}",
        ) from None


@cache
def country_to_region() -> dict[str, str]:
    return {country: r.code for r in all_regions() for country in r.countries}


def region_of_country(country: str) -> str | None:
    return country_to_region().get(country)


def region_of_client_id(client_id: str) -> str | None:
    """The region a client id was minted in, from its prefix; None when no region claims it."""
    for r in all_regions():
        if client_id.startswith(r.client_id_prefix):
            return r.code
    return None
