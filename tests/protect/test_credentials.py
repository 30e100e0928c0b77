"""Online store credentials: an ACL user per region, never the default user; TLS configurable."""

import pytest
import redis

from atelier.errors import AtelierError
from atelier.settings import RedisEndpoint, Settings


def test_redis_without_a_region_user_is_refused(tmp_path):
    s = Settings(home=tmp_path, online_store="redis", redis={"eu": RedisEndpoint(host="h", port=1), "us": RedisEndpoint(username="default", password="p")})
    with pytest.raises(AtelierError, match="uses the default user") as e:
        s.redis_for("eu")
    assert "ATELIER_REDIS__EU__USERNAME" in e.value.render()
    with pytest.raises(AtelierError, match="default user"):
        s.redis_for("us")
    with pytest.raises(AtelierError, match="no Redis configured for region 'apac'"):
        s.redis_for("apac")


def test_memorystore_auth_string_only_with_tls(tmp_path):
    plain = Settings(home=tmp_path, online_store="redis", redis={"eu": RedisEndpoint(host="10.0.0.3", password="auth-string", memorystore=True)})
    with pytest.raises(AtelierError, match="needs TLS and its AUTH string"):
        plain.redis_for("eu")
    tls = Settings(home=tmp_path, online_store="redis", redis={"eu": RedisEndpoint(host="10.0.0.3", password="auth-string", tls=True, memorystore=True)})
    assert tls.redis_for("eu").host == "10.0.0.3"


def test_tls_and_password_reference_in_feast_connection_string():
    endpoint = RedisEndpoint(host="10.0.0.3", port=6378, username="atelier-eu", password="s3cret", tls=True, ca_cert="/etc/ssl/memorystore-ca.pem")
    referenced = endpoint.feast_connection_string("${ATELIER_REDIS__EU__PASSWORD}")
    assert referenced.startswith("10.0.0.3:6378,username=atelier-eu,password=${ATELIER_REDIS__EU__PASSWORD},ssl=true,ssl_ca_certs=/etc/ssl/memorystore-ca.pem")
    assert "s3cret" not in referenced
    assert endpoint.client_kwargs()["ssl"] is True and endpoint.client_kwargs()["password"] == "s3cret"


def test_local_servers_switch_the_default_user_off(redis_servers):
    server = redis_servers["eu"]
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=server.port).ping()
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=server.port, username="atelier-eu", password="wrong").ping()
    assert server.client().ping()
