"""Settings: one object, read from the environment (prefix ATELIER_), with one data home.

Everything the platform writes lives under `home` (default ~/.atelier): the data lake, the
feature tables, each region's Feast registry and embedded online store, training runs, the
BentoML store and the local key store. Nothing is written inside the repository.
"""

from __future__ import annotations

import getpass
import os
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from atelier.errors import AtelierError
from atelier.regions import get_region, region_codes

_REPO_ROOT = Path(__file__).resolve().parents[1]


class RedisEndpoint(BaseModel):
    """A region's Redis: one server per region, its own ACL user, TLS when configured."""

    host: str = "localhost"
    port: int = 6379
    username: str | None = None
    password: SecretStr | None = None
    tls: bool = False
    ca_cert: Path | None = None
    # A request must not hang on an unreachable store: serving answers with a fallback instead.
    socket_timeout: float = 0.5
    # Memorystore for Redis authenticates with an AUTH string on its default user and has no ACL
    # users; that one case is allowed, and only with TLS and a password (see terraform/).
    memorystore: bool = False

    def feast_connection_string(self, password_ref: str | None = None) -> str:
        """Feast's `host:port,param=value` form. `password_ref` lets a yaml file name an
        environment variable instead of holding the secret."""
        parts = [f"{self.host}:{self.port}"]
        if self.username:
            parts.append(f"username={self.username}")
        if password_ref:
            parts.append(f"password={password_ref}")
        elif self.password is not None:
            parts.append(f"password={self.password.get_secret_value()}")
        if self.tls:
            parts.append("ssl=true")
            if self.ca_cert:
                parts.append(f"ssl_ca_certs={self.ca_cert}")
        parts += [f"socket_timeout={self.socket_timeout}", f"socket_connect_timeout={self.socket_timeout}"]
        return ",".join(parts)

    def client_kwargs(self) -> dict:
        kwargs: dict = {"host": self.host, "port": self.port, "username": self.username}
        if self.password is not None:
            kwargs["password"] = self.password.get_secret_value()
        if self.tls:
            kwargs["ssl"] = True
            if self.ca_cert:
                kwargs["ssl_ca_certs"] = str(self.ca_cert)
        kwargs["socket_timeout"] = kwargs["socket_connect_timeout"] = self.socket_timeout
        return kwargs


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ATELIER_", env_nested_delimiter="__", extra="ignore")

    home: Path = Path("~/.atelier")
    feature_repo: Path = _REPO_ROOT / "feature_repo"
    # The embedded default needs no server; `redis` uses one server per region from `redis`.
    online_store: Literal["sqlite", "redis"] = "sqlite"
    redis: dict[str, RedisEndpoint] = {}
    # Offline store: the encrypted Parquet datasets under `home`, or BigQuery (the cloud, see
    # terraform/ and `atelier features cloud-config`).
    offline_store: Literal["parquet", "bigquery"] = "parquet"
    # Where master keys live: a key store under `home` (created by `atelier keys init`), or Cloud KMS.
    kms: Literal["local", "gcp"] = "local"
    gcp_project: str | None = None
    gcp_key_ring: str = "atelier"
    # Bearer tokens per calling app for the recommendation service; empty means no auth (demo only).
    api_tokens: dict[str, SecretStr] = {}
    # A service without API tokens is refused, unless it is a local one (`atelier serve
    # --insecure-local`), which answers callers on this machine only.
    insecure_local: bool = False
    # Who the CLI acts as, judged by the Feast permissions in feature_repo/ (roles: ml-engineer,
    # maison:<slug>, service:recommender).
    user: str = Field(default_factory=getpass.getuser)
    roles: list[str] = ["ml-engineer"]

    @field_validator("home", "feature_repo")
    @classmethod
    def _expand(cls, v: Path) -> Path:
        return Path(os.path.expanduser(v)).absolute()

    @cached_property
    def paths(self) -> "Paths":
        return Paths(self.home)

    def service_tokens(self) -> dict[str, str]:
        """The bearer tokens a regional service checks, by calling app.

        None configured is refused (a service without them would answer anyone), unless
        `insecure_local` is set: then the service answers loopback callers only.
        """
        if not self.api_tokens and not self.insecure_local:
            raise AtelierError(
                "no API tokens: a service without them would answer anyone",
                fix="set ATELIER_API_TOKENS='{\"app\": \"<token>\"}', or serve on this machine only with --insecure-local",
            )
        return self.tokens()

    def tokens(self) -> dict[str, str]:
        """The configured bearer tokens by calling app, unsealed (no policy: see service_tokens)."""
        return {app: token.get_secret_value() for app, token in self.api_tokens.items()}

    def redis_for(self, region: str) -> RedisEndpoint:
        get_region(region)
        endpoint = self.redis.get(region)
        if endpoint is None:
            raise AtelierError(
                f"no Redis configured for region {region!r}",
                fix=f"set ATELIER_REDIS__{region.upper()}__HOST/PORT/USERNAME/PASSWORD, or ATELIER_ONLINE_STORE=sqlite",
            )
        if endpoint.memorystore:
            if not (endpoint.tls and endpoint.password):
                raise AtelierError(
                    f"Memorystore for region {region!r} needs TLS and its AUTH string",
                    fix=f"set ATELIER_REDIS__{region.upper()}__TLS=true and __PASSWORD (terraform output redis_auth_string)",
                )
            return endpoint
        if not endpoint.username or endpoint.username == "default":
            raise AtelierError(
                f"Redis for region {region!r} uses the default user",
                fix=f"create an ACL user for the region and set ATELIER_REDIS__{region.upper()}__USERNAME and __PASSWORD",
            )
        return endpoint


class Paths:
    """Where each stage reads and writes, under the data home. Region is always an argument."""

    def __init__(self, home: Path):
        self.home = home

    # data stage
    @property
    def lake(self) -> Path:
        return self.home / "lake"

    @property
    def manifest(self) -> Path:
        return self.lake / "manifest.json"

    def catalog(self, name: str) -> Path:
        """Global, non-client tables: maisons, products, stores."""
        return self.lake / "catalog" / name

    def client_table(self, name: str, region: str) -> Path:
        """Client-level tables (clients, events): a directory of encrypted Parquet parts."""
        return self.lake / name / f"region={region}"

    # features stage
    def features(self, region: str | None) -> Path:
        """A region's feature tables (or the global ones), swapped in together by the pipeline."""
        return self.home / "features" / (region or "global")

    def feature_table(self, name: str, region: str | None) -> Path:
        return self.features(region) / name

    def stream(self, region: str) -> Path:
        """A region's events received in real time: the journal's parts and its ledger (atelier.events)."""
        return self.home / "stream" / region

    def feast_dir(self, region: str) -> Path:
        return self.home / "feast" / region

    # training and serving stages
    def runs(self, region: str) -> Path:
        return self.home / "runs" / region

    @property
    def bentoml_home(self) -> Path:
        return self.home / "bentoml"

    @property
    def keys(self) -> Path:
        return self.home / "keys"

    def all_regions(self) -> list[str]:
        return region_codes()


def get_settings() -> Settings:
    """The settings from the environment (ATELIER_*); a value that does not parse is an
    AtelierError naming its variable, not a parser's traceback."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    try:
        return Settings()
    except SettingsError as e:  # a list or a mapping that is not JSON
        parts = str(e).split('"')
        var = f"ATELIER_{parts[1].upper()}" if len(parts) > 2 else "an ATELIER_* variable"
        raise AtelierError(f"{var} does not parse ({e.__cause__ or e})", where="environment",
                           fix=f"give {var} as JSON, for example ATELIER_API_TOKENS='{{\"app\": \"<token>\"}}', ATELIER_ROLES='[\"ml-engineer\"]'") from None
    except ValidationError as e:
        problems = "; ".join(f"ATELIER_{'__'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in e.errors())
        raise AtelierError(f"settings from the environment are not valid: {problems}", where="environment",
                           fix="correct or unset those variables") from None
