"""Run every benchmark in turn (make bench). Each prints its own table and saves JSON under results/."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
for script in ("feature_store.py", "encryption.py", "real_data.py", "forecast.py", "forecast_reference.py", "assortment.py", "training.py", "training_reference.py", "retrieval.py", "serving.py", "soak.py"):
    print(f"\n=== {script}", flush=True)
    code = subprocess.call([sys.executable, str(HERE / script)], cwd=HERE)
    if code:
        sys.exit(f"{script} failed ({code})")
