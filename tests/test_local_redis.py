"""The throw-away redis-server of tests and demos: a port taken between choosing and binding is survived."""

import socket

import pytest

import atelier.local_redis as lr

pytestmark = pytest.mark.redis


def test_a_port_taken_before_the_server_binds_it_is_replaced(tmp_path, monkeypatch):
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    ports = iter([taken])
    real = lr.free_port
    monkeypatch.setattr(lr, "free_port", lambda: next(ports, None) or real())
    server = lr.LocalRedis("u", "p", workdir=tmp_path)
    assert server.port == taken  # chosen while free... and taken since
    try:
        server.start()
        assert server.port != taken and server.client().ping()
    finally:
        server.stop()
        squatter.close()


def test_a_fixed_port_that_is_taken_is_a_clear_error(tmp_path):
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    try:
        with pytest.raises(lr.AtelierError, match="did not start on port"):
            lr.LocalRedis("u", "p", port=squatter.getsockname()[1], workdir=tmp_path).start(attempts=2)
    finally:
        squatter.close()


def test_a_server_in_a_folder_of_its_own_leaves_no_password_behind():
    server = lr.LocalRedis("u", "secret-p").start()
    try:
        assert "secret-p" in (server.workdir / "users.acl").read_text() and server.client().ping()
    finally:
        server.stop()
    assert not server.workdir.exists()
    server.start()  # and starts again
    try:
        assert server.client().ping()
    finally:
        server.stop()
    assert not server.workdir.exists()
