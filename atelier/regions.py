"""The region table: which countries each region serves and where its cloud resources live.

Client data never leaves its region, so every stage takes the region as a parameter and asks this
module where a client belongs. A client belongs to the region of its country; its id is whatever
the group's client systems use and says nothing about where it lives. The table itself is
`regions.json`, read by Terraform too, so the Python code and the infrastructure can never
disagree about a location. Every ISO 3166 country is in exactly one region's list.

Countries arrive as ISO alpha-2 or alpha-3 codes or English names; `country_code` turns each into
its alpha-2 code with pycountry, so "France", "FRA" and "fr" are all "FR".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

from atelier.errors import AtelierError


@dataclass(frozen=True)
class Region:
    """One data-residency region: its cloud location and the countries whose clients it holds."""

    code: str
    name: str
    location: str
    location_name: str
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


@cache
def _country_names() -> dict[str, str]:
    """Every spelling pycountry knows (alpha-2, alpha-3, name, official and common names), upper-cased."""
    import pycountry

    known = set(country_to_region())
    names: dict[str, str] = {}
    for c in pycountry.countries:
        if c.alpha_2 not in known:
            continue
        for attr in ("alpha_2", "alpha_3", "name", "official_name", "common_name"):
            value = getattr(c, attr, None)
            if value:
                names.setdefault(value.upper(), c.alpha_2)
    return names


def country_code(value: str | None) -> str | None:
    """The ISO alpha-2 code of a country given as a code or an English name; None if unknown."""
    if value is None:
        return None
    return _country_names().get(" ".join(str(value).split()).upper())

