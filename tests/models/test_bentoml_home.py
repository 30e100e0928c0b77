"""One process, two data homes: each home's models go to and come from its own BentoML store."""

import subprocess
import sys
from pathlib import Path

from atelier.models.store import use_bentoml_home
from atelier.settings import Settings


def _save(name: str) -> str:
    import bentoml

    with bentoml.models.create(name) as model:
        Path(model.path, "weights.txt").write_text(name)
    return str(model.tag)


def test_switching_homes_moves_the_model_store(tmp_path):
    first, second = Settings(home=tmp_path / "first"), Settings(home=tmp_path / "second")
    use_bentoml_home(first)
    tag_first = _save("home-test-first")
    use_bentoml_home(second)
    tag_second = _save("home-test-second")
    import bentoml

    assert [str(m.tag) for m in bentoml.models.list()] == [tag_second]
    assert (second.paths.bentoml_home / "models" / "home-test-second").is_dir()
    assert not (first.paths.bentoml_home / "models" / "home-test-second").exists()
    use_bentoml_home(first)
    assert [str(m.tag) for m in bentoml.models.list()] == [tag_first]
    # and a `bentoml` subprocess pointed at the second home sees what this process saved there
    listed = subprocess.run([str(Path(sys.executable).with_name("bentoml")), "models", "list", "-o", "json"],
                            env={"BENTOML_HOME": str(second.paths.bentoml_home), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=120)
    assert tag_second in listed.stdout and tag_first not in listed.stdout, listed.stderr[-500:]
