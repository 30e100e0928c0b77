"""`make test` touches nothing outside the project: a user's own redis-server survives its set-up."""

import subprocess
import time
from pathlib import Path

import pytest
import redis

from atelier.local_redis import free_port

pytestmark = pytest.mark.redis
ROOT = Path(__file__).resolve().parents[1]


def test_the_test_setup_leaves_a_users_own_redis_running(tmp_path):
    """`make system-deps` used to run `pkill -x redis-server`, killing every Redis on the machine."""
    port = free_port()
    theirs = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port, socket_timeout=1)
        for _ in range(100):
            try:
                client.set("mine", "still here")
                break
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        r = subprocess.run(["make", "-C", str(ROOT), "system-deps"], capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr
        time.sleep(0.5)
        assert theirs.poll() is None, "make system-deps stopped a redis-server it did not start"
        assert client.get("mine") == b"still here"
    finally:
        theirs.terminate()
        theirs.wait(10)
