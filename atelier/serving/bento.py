"""`atelier build` and `atelier serve`: a region's bento from its latest model, and a local server.

The build context is assembled in a scratch folder: atelier/bentos/service.py, the atelier wheel, and a
requirements file pinned to exactly the versions this environment runs and tests (the runtime
closure of atelier's dependencies; TensorFlow's CUDA build for --gpu). `bentoml build` then
writes a bento whose Dockerfile installs just that. Containerizing needs a Docker engine;
everything up to the Dockerfile is built and checked here.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

import atelier
from atelier.errors import AtelierError
from atelier.models.recommend.export import model_name
from atelier.models.store import use_bentoml_home
from atelier.regions import get_region
from atelier.settings import Settings

REPO = Path(atelier.__file__).resolve().parents[1]
SERVICE = REPO / "atelier" / "bentos" / "service.py"


def bento_name(region: str, gpu: bool) -> str:
    return f"atelier-recommender-{region}" + ("-gpu" if gpu else "")


def runtime_requirements(gpu: bool) -> list[str]:
    """`name==version` for atelier's runtime dependencies, as installed here (recursively)."""
    seen: dict[str, str] = {}
    todo: list[tuple[str, frozenset[str]]] = [("atelier", frozenset())]
    while todo:
        name, extras = todo.pop()
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        key = dist.metadata["Name"].lower().replace("_", "-")
        first = key not in seen
        seen[key] = dist.version
        for raw in dist.requires or []:
            req = Requirement(raw)
            envs = [{"extra": e} for e in extras] or [{"extra": ""}]
            if req.marker and not any(req.marker.evaluate(env) for env in envs):
                continue
            if first or req.extras:
                todo.append((req.name, frozenset(req.extras)))
    seen.pop("atelier", None)
    pins = []
    for name, version in sorted(seen.items()):
        if name == "tensorflow" and gpu:
            pins.append(f"tensorflow[and-cuda]=={version}")
        else:
            pins.append(f"{name}=={version}")
    return pins


def _wheel(ctx: Path) -> Path:
    out = ctx / "wheels"
    out.mkdir(parents=True, exist_ok=True)
    if not (REPO / "pyproject.toml").exists():
        raise AtelierError("bentos are built from a checkout of the atelier repository", where=str(REPO))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(REPO)], check=True, capture_output=True)
    wheels = sorted(out.glob("atelier-*.whl"))
    if not wheels:
        raise AtelierError("building the atelier wheel produced nothing", where=str(out))
    return wheels[-1]


def latest_model(settings: Settings, region: str) -> str:
    use_bentoml_home(settings)
    import bentoml

    try:
        return str(bentoml.models.get(f"{model_name(region)}:latest").tag)
    except bentoml.exceptions.NotFound:
        raise AtelierError(f"no trained model for region {region!r}", fix=f"run `atelier train --region {region}` first") from None


def latest_optional(settings: Settings, name: str) -> str | None:
    """The latest version of a model the region may not have trained (forecast, assortment)."""
    use_bentoml_home(settings)
    import bentoml

    try:
        return str(bentoml.models.get(f"{name}:latest").tag)
    except bentoml.exceptions.NotFound:
        return None


def _build_context(name: str) -> Path:
    """A fresh scratch folder for `bentoml build`, outside the data home.

    BentoML refuses to read build files through any path with a hidden part ("Accessing hidden
    files is not allowed"), and the default data home is `~/.atelier`; so the context lives in
    the temporary directory instead, and is removed once the bento is built."""
    ctx = Path(tempfile.mkdtemp(prefix=f"{name}-")).resolve()
    if any(part.startswith(".") for part in ctx.parts):
        shutil.rmtree(ctx, ignore_errors=True)
        raise AtelierError(
            "bentoml build cannot read files under a hidden (dot) folder",
            where=str(ctx),
            fix="point TMPDIR to a folder whose path has no part starting with '.'",
        )
    return ctx


def build(settings: Settings, region: str, gpu: bool = False) -> dict:
    region = get_region(region).code
    tag = latest_model(settings, region)
    from atelier.models.assortment.train import model_name as assortment_name
    from atelier.models.forecast.train import model_name as forecast_name

    planning = {"ATELIER_FORECAST_TAG": latest_optional(settings, forecast_name(region)),
                "ATELIER_ASSORTMENT_TAG": latest_optional(settings, assortment_name(region))}
    ctx = _build_context(bento_name(region, gpu))
    shutil.copy2(SERVICE, ctx / "service.py")
    wheel = _wheel(ctx)
    (ctx / "requirements.txt").write_text("\n".join(runtime_requirements(gpu) + [f"./wheels/{wheel.name}"]) + "\n")
    env = {
        **os.environ,
        "BENTOML_HOME": str(settings.paths.bentoml_home),
        "ATELIER_REGION": region,
        "ATELIER_MODEL_TAG": tag,
        "ATELIER_BENTO_GPU": "1" if gpu else "0",
        "ATELIER_BENTO_REQUIREMENTS": "requirements.txt",
        **{k: v for k, v in planning.items() if v},
    }
    for k in [k for k, v in planning.items() if not v]:
        env.pop(k, None)  # a tag from the caller's environment must not reach another region's bento
    bentoml_cli = Path(sys.executable).with_name("bentoml")
    result = subprocess.run([str(bentoml_cli), "build", "service:Recommender", "--output", "tag"], cwd=ctx, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise AtelierError(f"bentoml build failed: {(result.stderr or result.stdout).strip().splitlines()[-1:]}", where=str(ctx))
    match = re.search(r"__tag__:(\S+)", result.stdout)
    if not match:
        raise AtelierError(f"bentoml build did not report a tag: {result.stdout[-500:]}", where=str(ctx))
    bento_tag = match.group(1)
    shutil.rmtree(ctx, ignore_errors=True)  # the bento holds all of it now; a failed build's context is kept to look at
    path = bento_path(settings, bento_tag)
    return {"bento": bento_tag, "model": tag, "forecast": planning["ATELIER_FORECAST_TAG"], "assortment": planning["ATELIER_ASSORTMENT_TAG"],
            "path": str(path), "dockerfile": str(path / "env" / "docker" / "Dockerfile")}


def bento_path(settings: Settings, tag: str) -> Path:
    name, version = tag.split(":")
    return settings.paths.bentoml_home / "bentos" / name / version


INSECURE_LOCAL = "ATELIER_INSECURE_LOCAL"  # Settings.insecure_local, for the service


def serving_home(settings: Settings, region: str) -> Path:
    """The BentoML home a region's server runs with: the shared model and bento stores linked in,
    and a Prometheus folder of its own.

    BentoML empties `<home>/prometheus_multiproc_dir` whenever a server starts, and its workers
    keep their metrics there: two regions served from one home on one machine wiped each other's
    metrics, and /metrics of one showed the other's."""
    home = settings.home / "serve" / region
    home.mkdir(parents=True, exist_ok=True)
    for name in ("models", "bentos"):
        target = settings.paths.bentoml_home / name
        target.mkdir(parents=True, exist_ok=True)
        link = home / name
        if not link.is_symlink():
            if link.exists():
                shutil.rmtree(link)
            link.symlink_to(target, target_is_directory=True)
    return home


def serve_command(
    settings: Settings, region: str, port: int, *, gpu: bool = False, bento: str | None = None, workers: int | None = None,
    insecure_local: bool = False,
) -> tuple[list[str], dict]:
    """The `bentoml serve` command line and environment for a region's latest bento.

    A service needs API tokens (settings.api_tokens); `insecure_local` serves without them, and
    then only on 127.0.0.1, for a demo or a developer's machine.
    """
    region = get_region(region).code
    use_bentoml_home(settings)
    import bentoml

    name = bento or f"{bento_name(region, gpu)}:latest"
    try:
        info = bentoml.bentos.get(name)
    except bentoml.exceptions.NotFound:
        raise AtelierError(f"no bento {name!r}", fix=f"run `atelier build --region {region}` first") from None
    insecure_local = insecure_local or settings.insecure_local
    settings.model_copy(update={"insecure_local": insecure_local}).service_tokens()  # refuses an open service
    env = {
        **os.environ,
        "BENTOML_HOME": str(serving_home(settings, region)),
        "ATELIER_HOME": str(settings.home),
        "ATELIER_REGION": region,
        "ATELIER_MODEL_TAG": {e.name: e.value for e in info.info.envs}["ATELIER_MODEL_TAG"],
        "ATELIER_BENTO_GPU": "1" if gpu else "0",
    }
    baked = {e.name: e.value for e in info.info.envs}
    for name in ("ATELIER_FORECAST_TAG", "ATELIER_ASSORTMENT_TAG"):
        env.pop(name, None)
        if baked.get(name):
            env[name] = baked[name]
    if workers:
        env["ATELIER_WORKERS"] = str(workers)
    cmd = [str(Path(sys.executable).with_name("bentoml")), "serve", str(info.tag), "--port", str(port)]
    if insecure_local:
        env[INSECURE_LOCAL] = "1"
        cmd += ["--host", "127.0.0.1"]
    else:
        env.pop(INSECURE_LOCAL, None)
    return cmd, env


def wait_until_ready(url: str, proc: subprocess.Popen, timeout: float = 180, log: Path | None = None) -> None:
    """Block until `bentoml serve` answers /readyz; raise with its log if it dies or never does."""
    import time

    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AtelierError(f"the service exited ({proc.returncode})", where=url, details=[log.read_text()[-3000:]] if log else None)
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AtelierError(f"the service was not ready after {timeout:.0f}s", where=url, details=[log.read_text()[-3000:]] if log else None)


def port_taken(port: int) -> bool:
    """Whether something already listens on `port` (on any address)."""
    import socket

    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return True
    return False


def run_foreground(cmd: list[str], env: dict, grace_s: float = 30.0) -> int:
    """Run a server in its own process group until it exits or this process is told to stop.

    SIGTERM and SIGINT are forwarded to the whole group (bentoml's supervisor and workers), which
    stop taking requests and finish those in flight; whatever is left after `grace_s` is killed,
    so no worker outlives the command or keeps the port.
    """
    import signal
    import time

    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    stopping: list[float] = []

    def forward(sig, _frame):
        stopping.append(time.monotonic())
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while proc.poll() is None:
            if stopping and time.monotonic() - stopping[0] > grace_s:
                break
            time.sleep(0.1)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the group, if any
        proc.wait()
    return 0 if stopping else proc.returncode
