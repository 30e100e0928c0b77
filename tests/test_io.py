"""Atomic writes: a directory swap leaves the old tree or the new one, and a crash's leftovers go."""

import os

import pytest

import atelier.io as aio


def _tree(path, text):
    path.mkdir(parents=True)
    (path / "part").write_text(text)


def test_swap_exchanges_the_trees_in_one_step(tmp_path):
    target = tmp_path / "lake"
    _tree(target, "old")
    with aio.staged_dir(target) as stage:
        (stage / "part").write_text("new")
    assert (target / "part").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lake"]  # nothing left beside it


def test_a_failure_inside_the_stage_changes_nothing(tmp_path):
    target = tmp_path / "lake"
    _tree(target, "old")
    with pytest.raises(RuntimeError), aio.staged_dir(target) as stage:
        (stage / "part").write_text("half")
        raise RuntimeError("disk full")
    assert (target / "part").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lake"]


def test_without_an_atomic_exchange_a_crash_between_the_renames_is_undone(tmp_path, monkeypatch):
    """The fallback's window: the old tree set aside, the new one not yet in place."""
    target = tmp_path / "lake"
    _tree(target, "old")
    monkeypatch.setattr(aio, "_exchange", lambda a, b: False)

    def die(name):
        if name == "swap.between:lake":
            raise SystemExit("killed")  # stands for the SIGKILL: nothing after this line runs

    monkeypatch.setattr(aio.crash, "point", die)
    with pytest.raises(SystemExit), aio.staged_dir(target) as stage:
        (stage / "part").write_text("new")
    assert not target.exists()  # the window the exchange closes
    # a crashed writer's leftovers carry a pid that is gone: pretend ours is
    for p in tmp_path.iterdir():
        p.rename(p.with_name(p.name.replace(f"-{os.getpid()}-", "-999999999-")))
    aio.recover(target)
    assert (target / "part").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lake"]


def test_leftovers_of_a_live_writer_are_left_alone(tmp_path):
    live = tmp_path / f".lake.staging-{os.getppid()}-abcd1234"
    dead = tmp_path / ".lake.staging-999999999-abcd1234"
    live.mkdir()
    dead.mkdir()
    assert aio.leftovers(tmp_path, ".lake.staging-") == [dead]
