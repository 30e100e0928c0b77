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
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalRedis:
    def __init__(self, username: str, password: str, port: int | None = None, workdir: Path | None = None, persist: bool = False):
        if not shutil.which("redis-server"):
            raise AtelierError("redis-server is not installed", fix="apt-get install redis-server (make test does this)")
        self.username, self.password = username, password
        self.port = port or free_port()
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="atelier-redis-"))
        self.proc: subprocess.Popen | None = None
        self.persist = persist  # save on shutdown, reload on start (a restart keeps the data)

    def start(self) -> "LocalRedis":
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
            try:
                self.client().ping()
                return self
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        raise AtelierError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

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
