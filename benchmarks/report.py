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
ORDER = [
    ("feature_store", "Feature store", "benchmarks/feature_store.py"),
    ("encryption", "Encryption at rest", "benchmarks/encryption.py"),
    ("real_data", "Real data: Online Retail", "benchmarks/real_data.py"),
    ("training", "Training and evaluation", "benchmarks/training.py"),
    ("training_reference", "What the data allows", "benchmarks/training_reference.py"),
    ("retrieval", "Exact and approximate retrieval", "benchmarks/retrieval.py"),
    ("serving", "Serving over HTTP", "benchmarks/serving.py"),
]


def section() -> str:
    parts = []
    for name, title, script in ORDER:
        path = HERE / "results" / f"{name}.json"
        if not path.exists():
            parts.append(f"### {title}\n\nNot measured yet: `.venv/bin/python {script}`.\n")
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
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{START}\n{section()}{END}{tail}")
    print(f"wrote the benchmark tables into {README}")


if __name__ == "__main__":
    main()
