"""Datasets of Parquet parts, encrypted with the region's master key (Parquet modular encryption).

A dataset is a directory of `part-NNNNN.parquet` files plus `_dataset.json`, which records the
schema, the row count and how the parts are protected. Client-level data is always written
encrypted: every column and the footer with AES-GCM, data keys wrapped by key-encryption keys
wrapped by the region's master key (double wrapping). The wrapped keys live beside each part in
`_KEY_MATERIAL_FOR_<part>.json` (external key material), which is what lets `rotate` re-wrap them
under a new master key version without rewriting a byte of data.

Readers decrypt in memory (pyarrow.dataset with a ParquetDecryptionConfig); no plaintext copy is
ever written. Writes go to a staging directory that replaces the dataset only once complete.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import shutil
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pyarrow.parquet.encryption as pe

from atelier import crash
from atelier.errors import AtelierError
from atelier.io import json_text, swap_in
from atelier.protect.keys import KeyStore, master_key_id

MARKER = "_dataset.json"
_CACHE = dt.timedelta(minutes=10)
# Rows per row group. A filtered read (a range of clients, atelier.features.offline_store.RowsNeeded)
# skips the row groups its statistics rule out and decodes the others whole: with Arrow's
# default of 1,048,576 rows, three reads of 40,000 clients' features (eu of the 52M-event world,
# 5,000 clients at a time) took RSS up 2.03 GiB in 38 s; with 65,536, 0.72 GiB in 32 s, and the
# client_activity table's files are 8% smaller; a whole read takes as long.
ROW_GROUP_ROWS = 65_536


class _PyarrowKms(pe.KmsClient):
    """Adapts a `KeyStore` to pyarrow's KMS client interface."""

    def __init__(self, store: KeyStore):
        super().__init__()
        self.store = store

    def wrap_key(self, key_bytes, master_key_identifier):
        return self.store.wrap(bytes(key_bytes), master_key_identifier)

    def unwrap_key(self, wrapped_key, master_key_identifier):
        return self.store.unwrap(wrapped_key, master_key_identifier)


def _crypto(store: KeyStore) -> tuple[pe.CryptoFactory, pe.KmsConnectionConfig]:
    factory = pe.CryptoFactory(lambda _config: _PyarrowKms(store))
    return factory, pe.KmsConnectionConfig(custom_kms_conf={"region": store.region})


def stage_of(target: Path) -> Path:
    """Where a dataset is written before it is swapped in whole (hidden: never part of the data)."""
    target = Path(target)
    return target.with_name(f".{target.name}.staging")


class DatasetWriter:
    """Writes a dataset part by part (bounded memory), then swaps it in whole on `commit`."""

    def __init__(self, target: Path, keys: KeyStore | None, *, encrypt: bool = True, dictionary: bool = True, compression: str = "zstd"):
        """`dictionary=False` for small parts of mostly distinct values (the event journal's: a
        part per batch of 1,000 ids): dictionaries cost more there than they save. `compression`
        is a Parquet codec: zstd makes the smallest files, lz4 is faster to write."""
        if encrypt and keys is None:
            raise ValueError("an encrypted dataset needs the region's key store")
        self.target = Path(target)
        self.keys = keys if encrypt else None
        self.stage = stage_of(self.target)
        shutil.rmtree(self.stage, ignore_errors=True)  # left over from a crash: never part of the data
        self.stage.mkdir(parents=True)
        self.schema: pa.Schema | None = None
        self.rows = 0
        self.parts = 0
        self.dictionary = dictionary
        self.compression = compression
        if self.keys is not None:
            self._factory, self._kms = _crypto(self.keys)
            self._config = pe.EncryptionConfiguration(
                footer_key=master_key_id(self.keys.region),
                uniform_encryption=True,
                double_wrapping=True,
                internal_key_material=False,
                encryption_algorithm="AES_GCM_V1",
                cache_lifetime=_CACHE,
            )

    def write(self, table: pa.Table) -> None:
        if self.schema is None:
            self.schema = table.schema
        elif not table.schema.equals(self.schema):
            table = table.select(self.schema.names).cast(self.schema)
        path = self.stage / f"part-{self.parts:05d}.parquet"
        props = None
        if self.keys is not None:
            props = self._factory.file_encryption_properties(self._kms, self._config, str(path))
        pq.write_table(table, path, encryption_properties=props, compression=self.compression, use_dictionary=self.dictionary,
                       row_group_size=ROW_GROUP_ROWS)
        self.parts += 1
        self.rows += table.num_rows
        crash.point("dataset.part")

    def commit(self, schema: pa.Schema | None = None) -> None:
        schema = self.schema or schema
        if schema is None:
            raise ValueError(f"nothing written to {self.target} and no schema given")
        # Written in place: the stage is not the dataset until it is swapped in whole
        (self.stage / MARKER).write_text(json_text(
            {
                "schema": base64.b64encode(schema.serialize().to_pybytes()).decode(),
                "rows": self.rows,
                "parts": self.parts,
                "encrypted": self.keys is not None,
                "region": self.keys.region if self.keys else None,
                "master_key": master_key_id(self.keys.region) if self.keys else None,
            }))
        swap_in(self.stage, self.target)

    def abort(self) -> None:
        shutil.rmtree(self.stage, ignore_errors=True)

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def write_dataset(target: Path, tables: pa.Table | Iterable[pa.Table], keys: KeyStore | None, *, encrypt: bool = True, schema: pa.Schema | None = None,
                  dictionary: bool = True, compression: str = "zstd") -> None:
    writer = DatasetWriter(target, keys, encrypt=encrypt, dictionary=dictionary, compression=compression)
    try:
        for t in [tables] if isinstance(tables, pa.Table) else tables:
            if t.num_rows:
                writer.write(t)
        writer.commit(schema)
    except BaseException:
        writer.abort()
        raise


def dataset_info(path: Path) -> dict:
    marker = Path(path) / MARKER
    try:
        info = json.loads(marker.read_text())
    except FileNotFoundError:
        raise AtelierError(
            "no dataset here (or it was never completely written)",
            where=str(path),
            fix="run the stage that produces it (`atelier data generate|import`, `atelier features compute`)",
        ) from None
    info["schema"] = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(info["schema"])))
    return info


def part_files(path: Path) -> list[Path]:
    """The dataset's Parquet parts, in order."""
    return sorted(Path(path).glob("part-*.parquet"))


def open_dataset(path: Path, keys: KeyStore | None, parts: list[Path] | None = None) -> ds.Dataset:
    """A pyarrow dataset over the parts (or over `parts` of them), decrypting with `keys` when the
    data is encrypted."""
    info = dataset_info(path)
    files = [str(p) for p in (part_files(path) if parts is None else parts)]
    if not info["encrypted"]:
        return ds.dataset(files, schema=info["schema"], format="parquet")
    if keys is None:
        raise AtelierError(
            f"dataset is encrypted for region {info['region']!r} and no key store was given", where=str(path)
        )
    if keys.region != info["region"]:
        raise AtelierError(
            f"dataset belongs to region {info['region']!r}; keys of region {keys.region!r} cannot read it",
            where=str(path),
            fix="read a region's data with that region's keys (client data never leaves its region)",
        )
    factory, kms = _crypto(keys)
    decryption = ds.ParquetDecryptionConfig(factory, kms, pe.DecryptionConfiguration(cache_lifetime=_CACHE))
    fmt = ds.ParquetFileFormat(default_fragment_scan_options=ds.ParquetFragmentScanOptions(decryption_config=decryption))
    return ds.dataset(files, schema=info["schema"], format=fmt)


def read_dataset(path: Path, keys: KeyStore | None, columns: list[str] | None = None, filter=None) -> pa.Table:
    """The dataset's rows (those `filter` keeps), decrypted in memory.

    A filtered read keeps a few of many rows (a part of the clients, for training's point-in-time
    reads), yet every row group is decoded before it is filtered: it reads two files and two batches
    ahead at a time. Arrow's default read-ahead (4 files, 16 batches) held up to 1.8 GiB of decoded
    row groups at once for the client_activity table of a 12M-event region, against 0.7-0.9 GiB
    this way, in the same time on two cores."""
    dataset = open_dataset(path, keys)
    ahead = {"fragment_readahead": 2, "batch_readahead": 2} if filter is not None else {}
    try:
        return dataset.to_table(columns=columns, filter=filter, **ahead)
    except OSError as e:
        raise _explain(e, path) from None


def release_arrow_memory() -> None:
    """Give back to the system the memory Arrow's pool (mimalloc) keeps after a large read. It
    keeps it for Arrow's next allocations, but NumPy, pandas and TensorFlow allocate elsewhere:
    reading a 12M-event region's events for training left 2.1 GiB resident for a 0.6 GiB frame,
    0.8 GiB once released. Called between a training's phases, each costs a few milliseconds."""
    pa.default_memory_pool().release_unused()


def iter_batches(path: Path, keys: KeyStore | None, columns: list[str] | None = None, filter=None, batch_size: int = 262_144):
    dataset = open_dataset(path, keys)
    try:
        yield from dataset.to_batches(columns=columns, filter=filter, batch_size=batch_size)
    except OSError as e:
        raise _explain(e, path) from None


def rotate_dataset(path: Path, keys: KeyStore) -> int:
    """Re-wrap every part's key-encryption keys under the current master key. Data is untouched."""
    info = dataset_info(path)
    if not info["encrypted"]:
        return 0
    factory, kms = _crypto(keys)
    files = sorted(Path(path).glob("part-*.parquet"))
    for f in files:
        try:
            factory.rotate_master_keys(kms, str(f), double_wrapping=True, cache_lifetime_seconds=0)
        except OSError as e:
            raise _explain(e, f) from None
    return len(files)


def _explain(error: OSError, path) -> AtelierError:
    text = str(error)
    # pyarrow re-raises our key store's AtelierError as text inside an OSError: keep its message.
    for line in text.splitlines():
        if "AtelierError" in line or "master key" in line:
            return AtelierError(line.split("AtelierError:")[-1].strip(), where=str(path))
    return AtelierError(f"cannot read encrypted data: {text.splitlines()[0] if text else error!r}", where=str(path))
