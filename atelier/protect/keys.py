"""Master keys per region, behind one small interface with two implementations.

Parquet modular encryption (pyarrow) asks a KMS to wrap and unwrap its key-encryption keys with a
named master key. The group holds those master keys:

* `LocalKeyStore` keeps them in files under the data home (created by `atelier keys init`, mode
  0600, never in the repository). Used by the embedded default and the tests.
* `GcpKmsKeyStore` asks Google Cloud KMS, where the region's key ring lives in the region's own
  location (see terraform/modules/region). Used by the cloud configuration.

Each store serves one region only, so a process holding the EU keys cannot decrypt US data even
if the files were copied across.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from atelier.errors import AtelierError
from atelier.io import write_bytes_atomic
from atelier.regions import get_region


def master_key_id(region: str) -> str:
    """The master key name recorded in every encrypted file of a region."""
    return f"atelier-{region}-offline"


class KeyStore(ABC):
    """Wraps and unwraps key-encryption keys with the region's current master key."""

    def __init__(self, region: str):
        self.region = get_region(region).code

    def check_identifier(self, master_key_identifier: str) -> None:
        if master_key_identifier != master_key_id(self.region):
            raise AtelierError(
                f"data is encrypted with master key {master_key_identifier!r}, "
                f"but this process holds the keys of region {self.region!r} only",
                fix="read a region's data with that region's keys (client data never leaves its region)",
            )

    @abstractmethod
    def wrap(self, key: bytes, master_key_identifier: str) -> str: ...

    @abstractmethod
    def unwrap(self, wrapped: str, master_key_identifier: str) -> bytes: ...

    @abstractmethod
    def rotate(self) -> str:
        """Make a new master key version primary; old versions still unwrap until retired."""

    @abstractmethod
    def retire_old_versions(self) -> list[str]:
        """Disable every version but the primary, once all data is re-wrapped."""


class LocalKeyStore(KeyStore):
    """Master key versions in `<home>/keys/<region>.json`, AES-256-GCM wrapping."""

    def __init__(self, keys_dir: Path, region: str):
        super().__init__(region)
        self.path = keys_dir / f"{self.region}.json"

    @staticmethod
    def init(keys_dir: Path, region: str) -> bool:
        """Create the region's key file if it does not exist. Returns True when created."""
        path = keys_dir / f"{get_region(region).code}.json"
        if path.exists():
            return False
        keys_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(keys_dir, 0o700)
        LocalKeyStore(keys_dir, region)._save({"region": region, "primary": 1, "versions": {"1": _new_version()}})
        return True

    def _load(self) -> dict[str, Any]:
        try:
            state = json.loads(self.path.read_text())
        except FileNotFoundError:
            raise AtelierError(
                f"no master key for region {self.region!r}",
                where=str(self.path),
                fix="run `atelier keys init` (once per machine; keys stay outside the repository)",
            ) from None
        if state.get("region") != self.region:
            raise AtelierError(f"key file belongs to region {state.get('region')!r}", where=str(self.path))
        return state

    def _save(self, state: dict[str, Any]) -> None:
        write_bytes_atomic(self.path, json.dumps(state, indent=2).encode())
        os.chmod(self.path, 0o600)

    def wrap(self, key: bytes, master_key_identifier: str) -> str:
        self.check_identifier(master_key_identifier)
        state = self._load()
        version = str(state["primary"])
        nonce = os.urandom(12)
        secret = base64.b64decode(state["versions"][version]["key"])
        sealed = AESGCM(secret).encrypt(nonce, key, master_key_identifier.encode())
        return f"local:v{version}:" + base64.b64encode(nonce + sealed).decode()

    def unwrap(self, wrapped: str, master_key_identifier: str) -> bytes:
        self.check_identifier(master_key_identifier)
        try:
            kind, version, payload = wrapped.split(":", 2)
        except ValueError:
            raise AtelierError("wrapped key is not from the local key store", where=str(self.path)) from None
        if kind != "local":
            raise AtelierError(f"data was encrypted with a {kind!r} key store", fix="set ATELIER_KMS to match")
        state = self._load()
        entry = state["versions"].get(version.removeprefix("v"))
        if entry is None or entry.get("state") != "ENABLED":
            raise AtelierError(
                f"master key version {version} of region {self.region!r} is not available (retired or unknown)",
                where=str(self.path),
                fix="restore the key file from backup; data written with a retired key cannot be read",
            )
        raw = base64.b64decode(payload)
        try:
            return AESGCM(base64.b64decode(entry["key"])).decrypt(raw[:12], raw[12:], master_key_identifier.encode())
        except InvalidTag:
            raise AtelierError(
                f"wrong master key for region {self.region!r}: the key file does not match the data",
                where=str(self.path),
                fix="use the key file that was in place when the data was written",
            ) from None

    def rotate(self) -> str:
        state = self._load()
        new = str(max(int(v) for v in state["versions"]) + 1)
        state["versions"][new] = _new_version()
        state["primary"] = int(new)
        self._save(state)
        return f"v{new}"

    def retire_old_versions(self) -> list[str]:
        state = self._load()
        retired = []
        for version, entry in state["versions"].items():
            if int(version) != state["primary"] and entry["state"] == "ENABLED":
                # The key bytes are destroyed, not just flagged: a retired version decrypts nothing.
                entry.update(state="DESTROYED", key="", destroyed=_now())
                retired.append(f"v{version}")
        self._save(state)
        return retired

    def versions(self) -> dict[str, str]:
        state = self._load()
        return {f"v{v}": e["state"] + (" (primary)" if int(v) == state["primary"] else "") for v, e in state["versions"].items()}


def _new_version() -> dict[str, str]:
    return {"key": base64.b64encode(AESGCM.generate_key(bit_length=256)).decode(), "state": "ENABLED", "created": _now()}


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class GcpKmsKeyStore(KeyStore):
    """Cloud KMS: the region's key ring sits in the region's location; KMS keeps the versions.

    `client` is a `google.cloud.kms.KeyManagementServiceClient`; tests pass a stand-in because
    Google Cloud cannot be reached from where they run.
    """

    def __init__(self, region: str, project: str, key_ring: str = "atelier", client: Any = None):
        super().__init__(region)
        if not project:
            raise AtelierError("Cloud KMS needs a project", fix="set ATELIER_GCP_PROJECT")
        if client is None:
            from google.cloud import kms  # imported lazily: only the cloud configuration needs it

            client = kms.KeyManagementServiceClient()
        self.client = client
        location = get_region(region).location
        self.key_name = f"projects/{project}/locations/{location}/keyRings/{key_ring}-{self.region}/cryptoKeys/offline-data"

    def wrap(self, key: bytes, master_key_identifier: str) -> str:
        self.check_identifier(master_key_identifier)
        response = self.client.encrypt(
            request={"name": self.key_name, "plaintext": key, "additional_authenticated_data": master_key_identifier.encode()}
        )
        return "gcp:" + base64.b64encode(response.ciphertext).decode()

    def unwrap(self, wrapped: str, master_key_identifier: str) -> bytes:
        self.check_identifier(master_key_identifier)
        kind, _, payload = wrapped.partition(":")
        if kind != "gcp":
            raise AtelierError(f"data was encrypted with a {kind!r} key store", fix="set ATELIER_KMS to match")
        response = self.client.decrypt(
            request={
                "name": self.key_name,
                "ciphertext": base64.b64decode(payload),
                "additional_authenticated_data": master_key_identifier.encode(),
            }
        )
        return response.plaintext

    def rotate(self) -> str:
        version = self.client.create_crypto_key_version(request={"parent": self.key_name, "crypto_key_version": {}})
        self.client.update_crypto_key_primary_version(
            request={"name": self.key_name, "crypto_key_version_id": version.name.rsplit("/", 1)[-1]}
        )
        return version.name.rsplit("/", 1)[-1]

    def retire_old_versions(self) -> list[str]:
        key = self.client.get_crypto_key(request={"name": self.key_name})
        primary = key.primary.name
        retired = []
        for version in self.client.list_crypto_key_versions(request={"parent": self.key_name}):
            if version.name != primary and version.state.name == "ENABLED":
                self.client.destroy_crypto_key_version(request={"name": version.name})
                retired.append(version.name.rsplit("/", 1)[-1])
        return retired


def key_store(settings, region: str) -> KeyStore:
    if settings.kms == "gcp":
        return GcpKmsKeyStore(region, settings.gcp_project or "", settings.gcp_key_ring)
    return LocalKeyStore(settings.paths.keys, region)
