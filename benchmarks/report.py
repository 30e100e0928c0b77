"""Write the latest benchmark tables (results/*.json) into the README, between its markers.

    .venv/bin/python benchmarks/report.py          # make bench runs it after the benchmarks

The README keeps the current figures; this keeps them exactly as the scripts printed them,
with the date each was measured, so the text and the measurements cannot drift apart.
"""

import json
import sys
from pathlib import Path

HERE = Path(__file__).parent
README = HERE.parent / "README.md"
START, END = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"
ORDER = [  # real data first: what users judge the platform by
    ("real_data", "Real data: Online Retail", "benchmarks/real_data.py"),
    ("forecast", "Forecasts", "benchmarks/forecast.py"),
    ("assortment", "Assortments", "benchmarks/assortment.py"),
    ("feature_store", "Feature store", "benchmarks/feature_store.py"),
    ("encryption", "Encryption at rest", "benchmarks/encryption.py"),
    ("training", "Training and evaluation", "benchmarks/training.py"),
    ("training_reference", "What the data allows", "benchmarks/training_reference.py"),
    ("retrieval", "Exact and approximate retrieval", "benchmarks/retrieval.py"),
    ("serving", "Serving over HTTP", "benchmarks/serving.py"),
    ("soak", "Soak", "benchmarks/soak.py"),
]


def _existing(block: str) -> dict[str, str]:
    """The README's current sections by title: results/ is not kept, so a table measured on
    another day (or machine) stays as it was until its benchmark runs again here."""
    sections = {}
    for part in ("\n" + block).split("\n### ")[1:]:
        title = part.split("\n", 1)[0].strip()
        sections[title] = "### " + part.rstrip("\n") + "\n"
    return sections


def section(current: str = "") -> str:
    parts = []
    kept = _existing(current)
    for name, title, script in ORDER:
        path = HERE / "results" / f"{name}.json"
        if not path.exists():
            parts.append(kept.get(title) or f"### {title}\n\nNot measured yet: `.venv/bin/python {script}`.\n")
            continue
        result = json.loads(path.read_text())
        tables = "\n\n".join(t.strip("\n") for t in result["tables"])
        parts.append(f"### {title}\n\n`.venv/bin/python {script}`, measured {result['when'].replace('T', ' ')}:\n\n```\n{tables}\n```\n")
    return "\n".join(parts)


def main() -> None:
    text = README.read_text()
    if START not in text or END not in text:
        sys.exit(f"{README}: the markers {START} and {END} are missing; put them where the tables go")
    head, rest = text.split(START, 1)
    current, tail = rest.split(END, 1)
    README.write_text(f"{head}{START}\n{section(current)}{END}{tail}")
    print(f"wrote the benchmark tables into {README}")


if __name__ == "__main__":
    main()
