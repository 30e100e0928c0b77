"""The Cloud KMS key store, checked against a stand-in.

Google Cloud cannot be reached from where these tests run, so `StandInKms` plays the part of
`google.cloud.kms.KeyManagementServiceClient`: it records every request and does the crypto
locally. What is checked is what we send (key names in the region's own location, additional
authenticated data) and that pyarrow's encryption works end to end through this key store.
"""

import os

import pyarrow as pa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.cloud import kms

from atelier.protect.keys import GcpKmsKeyStore
from atelier.protect.parquet import read_dataset, rotate_dataset, write_dataset


class StandInKms:
    def __init__(self):
        self.requests = []
        self.versions = {1: AESGCM.generate_key(bit_length=256)}
        self.primary = 1
        self.destroyed = set()

    def encrypt(self, request):
        self.requests.append(("encrypt", request))
        nonce = os.urandom(12)
        body = AESGCM(self.versions[self.primary]).encrypt(nonce, request["plaintext"], request["additional_authenticated_data"])
        return kms.EncryptResponse(ciphertext=bytes([self.primary]) + nonce + body)

    def decrypt(self, request):
        self.requests.append(("decrypt", request))
        c = request["ciphertext"]
        version = c[0]
        assert version not in self.destroyed, "destroyed version"
        return kms.DecryptResponse(plaintext=AESGCM(self.versions[version]).decrypt(c[1:13], c[13:], request["additional_authenticated_data"]))

    def create_crypto_key_version(self, request):
        self.requests.append(("create_version", request))
        n = max(self.versions) + 1
        self.versions[n] = AESGCM.generate_key(bit_length=256)
        return kms.CryptoKeyVersion(name=f"{request['parent']}/cryptoKeyVersions/{n}")

    def update_crypto_key_primary_version(self, request):
        self.requests.append(("set_primary", request))
        self.primary = int(request["crypto_key_version_id"])

    def get_crypto_key(self, request):
        return kms.CryptoKey(name=request["name"], primary=kms.CryptoKeyVersion(name=f"{request['name']}/cryptoKeyVersions/{self.primary}"))

    def list_crypto_key_versions(self, request):
        state = kms.CryptoKeyVersion.CryptoKeyVersionState
        return [kms.CryptoKeyVersion(name=f"{request['parent']}/cryptoKeyVersions/{n}", state=state.DESTROY_SCHEDULED if n in self.destroyed else state.ENABLED) for n in self.versions]

    def destroy_crypto_key_version(self, request):
        self.requests.append(("destroy", request))
        self.destroyed.add(int(request["name"].rsplit("/", 1)[1]))


def test_parquet_encryption_through_cloud_kms_requests(tmp_path):
    standin = StandInKms()
    store = GcpKmsKeyStore("apac", project="group-data", client=standin)
    table = pa.table({"client_id": ["AP00000001"], "note": ["secret"]})
    write_dataset(tmp_path / "ds", table, store)
    assert read_dataset(tmp_path / "ds", store).equals(table)
    names = {r[1]["name"] for r in standin.requests if r[0] in ("encrypt", "decrypt")}
    assert names == {"projects/group-data/locations/asia-southeast1/keyRings/atelier-apac/cryptoKeys/offline-data"}
    assert all(r[1]["additional_authenticated_data"] == b"atelier-apac-offline" for r in standin.requests if r[0] == "encrypt")


def test_cloud_kms_rotation_and_retirement(tmp_path):
    standin = StandInKms()
    store = GcpKmsKeyStore("eu", project="group-data", client=standin)
    write_dataset(tmp_path / "ds", pa.table({"client_id": ["EU1"]}), store)
    assert store.rotate() == "2" and standin.primary == 2
    rotate_dataset(tmp_path / "ds", store)
    assert store.retire_old_versions() == ["1"]
    assert read_dataset(tmp_path / "ds", store).num_rows == 1  # readable with version 2 alone
