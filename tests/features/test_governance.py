"""`atelier features check`: each rule fails on a planted violation, with its message, and nothing is applied.

Each test copies feature_repo/, plants one bad file under maisons/, and runs the check (and,
for one, the apply) on the copy with the tiny world's lake (its catalog names the maisons).
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from atelier.errors import AtelierError
from atelier.features import repo
from atelier.features.governance import RULES, check
from atelier.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
HEADER = """
from feast import FeatureService, FeatureView, Field
from feast.types import Int64

from atelier.features.definitions import NO_TTL, maison_private_read, source, tags
from client_features import client_activity, client_profile
from entities import client

SRC = source(name="{name}_source", table="features/{{region}}/maison_engagement/lumiere-de-grasse", timestamp_field="event_timestamp")
"""


def _view(name: str, *, tags: str, description: str = "Views of the maison's products in 90 days.") -> str:
    return f"""
{name} = FeatureView(
    name="{name}", entities=[client], ttl=NO_TTL, source=SRC, online=True, description="planted",
    schema=[Field(name="maison_views_90d", dtype=Int64, description="{description}")],
    tags={tags},
)
"""


PRIVATE = 'tags(owner="lumiere-de-grasse", sharing="private", sensitivity="confidential")'
PERMIT = '\n{perm} = maison_private_read("lumiere-de-grasse", [{name}], name="{perm}")\n'

# rule -> (file body, the words the message must carry)
PLANTED = {
    "tags": (_view("lumiere_de_grasse_untagged", tags='{"owner": "lumiere-de-grasse"}'), "lacks the tag(s) sharing, sensitivity"),
    "description": (_view("lumiere_de_grasse_mute", tags=PRIVATE, description="")
                    + PERMIT.format(name="lumiere_de_grasse_mute", perm="p2"), "feature 'maison_views_90d' has no description"),
    "permission": (_view("lumiere_de_grasse_unguarded", tags=PRIVATE), "no permission lets the role 'maison:lumiere-de-grasse' read it"),
    "sensitivity": (_view("group_secrets", tags='tags(owner="group", sharing="shared", sensitivity="restricted")'),
                    "is shared but restricted"),
    "reuse": ("""
horlogerie_vauclair_peeks_v1 = FeatureService(
    name="horlogerie_vauclair_peeks_v1", features=[client_profile, lumiere_de_grasse_engagement],
    tags=tags(owner="horlogerie-vauclair", sharing="private", sensitivity="confidential"),
)
""", "reads lumiere_de_grasse_engagement, private to lumiere-de-grasse"),
    "names": (_view("lumiere_de_grasse_Stats", tags=PRIVATE) + PERMIT.format(name="lumiere_de_grasse_Stats", perm="p3"), "name is not snake_case"),
}


@pytest.fixture
def repo_copy(settings: Settings, tmp_path: Path) -> Settings:
    target = tmp_path / "feature_repo"
    shutil.copytree(ROOT / "feature_repo", target, ignore=shutil.ignore_patterns("__pycache__"))
    return settings.model_copy(update={"feature_repo": target})


def _plant(s: Settings, rule: str) -> None:
    body, _ = PLANTED[rule]
    extra = "from maisons.lumiere_de_grasse import lumiere_de_grasse_engagement\n" if rule == "reuse" else ""
    (s.feature_repo / "maisons" / f"planted_{rule}.py").write_text(HEADER.format(name=f"planted_{rule}") + extra + textwrap.dedent(body))


def test_the_shipped_repository_passes(settings: Settings):
    assert check(repo.parse_definitions(settings)) == []


def test_every_rule_has_a_planted_violation():
    assert set(PLANTED) == set(RULES)


@pytest.mark.parametrize("rule", sorted(PLANTED))
def test_each_rule_fails_on_its_planted_violation(repo_copy: Settings, rule: str):
    _plant(repo_copy, rule)
    problems = check(repo.parse_definitions(repo_copy))
    assert [p.rule for p in problems] == [rule], problems
    assert PLANTED[rule][1] in problems[0].message
    assert problems[0].fix
    # and the apply refuses it before anything is registered
    with pytest.raises(AtelierError, match="nothing was applied"):
        repo.apply(repo_copy, "eu")
    assert not (repo_copy.paths.feast_dir("eu") / "registry.db").exists()


def test_private_names_carry_the_owner_and_services_a_version(repo_copy: Settings):
    (repo_copy.feature_repo / "maisons" / "planted_prefix.py").write_text(HEADER.format(name="planted_prefix") + textwrap.dedent(
        _view("gifting", tags=PRIVATE) + PERMIT.format(name="gifting", perm="p4") + """
lumiere_de_grasse_gifts = FeatureService(name="lumiere_de_grasse_gifts", features=[gifting], tags=tags(owner="lumiere-de-grasse", sharing="private", sensitivity="confidential"))
"""))
    messages = {(p.name, p.message) for p in check(repo.parse_definitions(repo_copy))}
    assert ("gifting", "is private to lumiere-de-grasse but its name does not start with 'lumiere_de_grasse_'") in messages
    assert ("lumiere_de_grasse_gifts", "name is not snake_case ending in _v<N>") in messages


def test_an_unknown_owner_and_bad_tag_values_are_named(repo_copy: Settings):
    (repo_copy.feature_repo / "maisons" / "planted_values.py").write_text(HEADER.format(name="planted_values") + textwrap.dedent(
        _view("maison_fantome_stats", tags='{"owner": "Maison Fantôme", "sharing": "open", "sensitivity": "secret"}')))
    messages = [p.message for p in check(repo.parse_definitions(repo_copy))]
    assert any("sharing 'open' is not one of shared, private" in m for m in messages), messages
    assert any("sensitivity 'secret' is not one of" in m for m in messages), messages
    assert any("owner 'Maison Fantôme' is neither 'group' nor a maison slug" in m for m in messages), messages


def test_apply_refuses_a_repository_that_breaks_a_rule_and_registers_nothing(repo_copy: Settings):
    _plant(repo_copy, "permission")
    registry = repo_copy.paths.feast_dir("eu") / "registry.db"
    before = registry.read_bytes() if registry.exists() else None
    with pytest.raises(AtelierError) as e:
        repo.apply(repo_copy, "eu")
    assert "breaks 1 rule(s); nothing was applied" in str(e.value)
    assert "lumiere_de_grasse_unguarded" in str(e.value) and "atelier features check" in str(e.value)
    assert (registry.read_bytes() if registry.exists() else None) == before
    # mended, it applies
    (repo_copy.feature_repo / "maisons" / "planted_permission.py").unlink()
    assert "client_profile" in repo.apply(repo_copy, "eu")["applied"]


def test_a_file_that_does_not_load_is_named_with_its_line(repo_copy: Settings):
    (repo_copy.feature_repo / "maisons" / "planted_broken.py").write_text("from entities import clients  # a typo\n")
    with pytest.raises(AtelierError) as e:
        repo.parse_definitions(repo_copy)
    assert "planted_broken.py:1" in str(e.value) and "clients" in str(e.value)
