"""Start a throw-away `redis-server` with a per-region ACL user (tests, benchmarks, demos).

Production uses Memorystore (terraform/modules/region); locally each region still gets its own
server and its own user, and the default user is switched off, as it must be outside the demo.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from atelier.errors import AtelierError
from atelier.settings import RedisEndpoint


def free_port() -> int:
    """A port free right now. Another process may take it before ours binds it: servers started
    on it must check that they did bind (LocalRedis.start retries on a fresh port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalRedis:
    def __init__(self, username: str, password: str, port: int | None = None, workdir: Path | None = None, persist: bool = False):
        if not shutil.which("redis-server"):
            raise AtelierError("redis-server is not installed", fix="apt-get install redis-server (make test does this)")
        self.username, self.password = username, password
        self.fixed_port = port is not None
        self.port = port or free_port()
        # A folder of its own unless given: it holds the ACL file, password included, so `stop`
        # removes it (a persistent server keeps its data there, and keeps it).
        self.owns_workdir = workdir is None and not persist
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="atelier-redis-"))
        self.proc: subprocess.Popen | None = None
        self.persist = persist  # save on shutdown, reload on start (a restart keeps the data)

    def start(self, attempts: int = 5) -> "LocalRedis":
        """Start the server; on a port taken meanwhile by someone else, try a fresh one (unless fixed)."""
        for _ in range(attempts):
            if self._start_once():
                return self
            if self.fixed_port:
                break
            self.port = free_port()
        raise AtelierError(f"redis-server did not start on port {self.port}", fix="is the port taken? see `ss -ltnp`")

    def _start_once(self) -> bool:
        self.workdir.mkdir(parents=True, exist_ok=True)
        acl = self.workdir / "users.acl"
        acl.write_text(f"user default off\nuser {self.username} on >{self.password} ~* &* +@all\n")
        self.proc = subprocess.Popen(
            [
                "redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir),
                "--aclfile", str(acl), "--save", "3600 1" if self.persist else "", "--appendonly", "no", "--protected-mode", "yes",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.proc.poll() is not None:  # exited: the port was taken (never talk to that other server)
                return False
            try:
                # a short timeout: whatever else listens on a taken port may never answer
                redis.Redis(host="127.0.0.1", port=self.port, username=self.username, password=self.password, socket_timeout=0.5).ping()
                return True
            except (redis.exceptions.ConnectionError, redis.exceptions.AuthenticationError, redis.exceptions.TimeoutError):
                time.sleep(0.05)
        self.stop()
        return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None
        if self.owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)  # `start` makes it again

    def endpoint(self) -> RedisEndpoint:
        return RedisEndpoint(host="127.0.0.1", port=self.port, username=self.username, password=self.password)

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, username=self.username, password=self.password)

    def env(self, region: str) -> dict[str, str]:
        r = region.upper()
        return {
            f"ATELIER_REDIS__{r}__HOST": "127.0.0.1",
            f"ATELIER_REDIS__{r}__PORT": str(self.port),
            f"ATELIER_REDIS__{r}__USERNAME": self.username,
            f"ATELIER_REDIS__{r}__PASSWORD": self.password,
        }
