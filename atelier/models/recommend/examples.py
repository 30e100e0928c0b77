"""A region's training examples on disk, written a part at a time and streamed into `tf.data`.

Held in memory, a training set's query-tower inputs made the peak of a region's training: a
client's product histories enter the tower as bags of 20 product ids, and building 479,000 examples
took a 30,000-client region to 5.5 GB RSS (3.5 GB built this way; the 100k-client benchmark went
from 13.3 to 7.6 GB). Here they are built a part
of `PART_ROWS` examples at a time (point-in-time features read for that part's clients only) and
written as the region's encrypted Parquet, like the lake; training reads the parts back as Arrow
record batches, `MIX` parts at a time, so memory is bounded by a few parts whatever the number of
events. The parts of the final refit are the run's `training_set` (kept for audits and
reproducibility; the residency audit reads its `client_id` column).

Shuffling: each part holds whole clients, a range of their ids (`assign_parts`: what keeps its
point-in-time read to a few files); every epoch takes the parts in a new random order and
permutes the rows of each `MIX` parts together. Up to `PART_ROWS * MIX` examples, that is one
permutation of the whole set, as the in-memory pipeline did; beyond, each stretch of an epoch
mixes `MIX` ranges of clients drawn at random, which is as good as `MIX` random samples of clients
where ids say nothing of the clients' behaviour, and mixes `MIX` cohorts where ids were handed
out in sign-up order.
"""

from __future__ import annotations

import os
import shutil
import uuid
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from atelier.io import leftovers, swap_in
from atelier.models.recommend.inputs import BAG, BAG_LENGTH, CATEGORICAL, NUMERIC, TIMESTAMP, FeatureSpec
from atelier.protect.keys import KeyStore
from atelier.protect.parquet import DatasetWriter, open_dataset, part_files, stage_of

PART_ROWS = 100_000
PART_CLIENTS = 5_000  # at most, per part (`assign_parts`): uncapped, about 2,000 clients make 100,000 examples in the large world
MIX = 4
# Besides the query inputs, each row says what was bought (or viewed) and how much it counts.
ROW_COLUMNS = ("product_index", "product_id", "weight", "event_timestamp")


def assign_parts(client_codes: np.ndarray, part_rows: int, part_clients: int = PART_CLIENTS) -> np.ndarray:
    """The part of each example: clients in the order of their codes (codes in the order of the
    ids), cut every `part_rows` examples or `part_clients` clients, whichever comes first (a
    part may pass either by one client).

    A client is never split, so its point-in-time lookups are made once, and a part is a range of
    ids: the feature tables hold a range of clients per file, sorted, so a part's point-in-time
    read decrypts the row groups of its range only (atelier.features.offline_store.RowsNeeded),
    not the whole table. For the client_activity table of a 12M-event region that read took 6-7 s per part
    of 100,000 examples, and held up to 1.8 GiB of decoded row groups, for parts of clients drawn
    at random.

    The bound on clients is what bounds the read's memory: it holds every feature row of the
    part's clients, however few of their examples are kept. With `max_examples`, a client keeps
    a few examples, and parts of 100,000 examples spanned 20,000 clients (the refit's build, eu
    of the 52M-event world): their reads took RSS up to 8.47 GiB, on a base of 5.8-6.3.

    Each client costs the larger of its shares of the two bounds, and a part ends with the client
    whose running cost reaches the next whole (in integers, so no rounding moves a cut). Parts
    that mix both kinds of clients stop a little short of either bound; one pass of cumulative
    sums is worth that."""
    clients, per_client = np.unique(client_codes, return_counts=True)
    cost = np.maximum(per_client.astype(np.int64) * part_clients, part_rows)  # in 1 / (part_rows * part_clients) of a part
    part_of_client = (np.cumsum(cost) - 1) // (np.int64(part_rows) * part_clients)
    return part_of_client[np.searchsorted(clients, client_codes)]


class ExampleParts:
    """The query inputs, products and weights of a training set, in encrypted parts under `path`.

    Written with `write` part by part, then `commit`. The directory belongs to this object (and to
    this process: a directory of a process that died is removed by the next `scratch`)."""

    def __init__(self, path: Path, keys: KeyStore, specs: list[FeatureSpec]):
        self.path, self.keys, self.specs = Path(path), keys, specs
        self.rows = 0
        self._writer: DatasetWriter | None = DatasetWriter(self.path / "examples", keys)
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.path), True)

    @staticmethod
    def scratch(runs: Path, keys: KeyStore, specs: list[FeatureSpec]) -> ExampleParts:
        """A new set under the region's runs directory, named for this process."""
        runs.mkdir(parents=True, exist_ok=True)
        for old in leftovers(runs, ".examples-", keep_own=True):
            shutil.rmtree(old, ignore_errors=True)
        return ExampleParts(runs / f".examples-{os.getpid()}-{uuid.uuid4().hex[:8]}", keys, specs)

    def write(self, query: dict[str, np.ndarray], rows: dict[str, np.ndarray]) -> None:
        clash = set(query) & set(ROW_COLUMNS)
        if clash:
            raise ValueError(f"query inputs named like a training row's columns: {sorted(clash)}")
        cols = {"client_id": pa.array(query["client_id"], pa.string())}
        for name, x in query.items():
            if name == "client_id":
                continue
            if x.ndim == 2:  # a bag, padded on the left with ""
                cols[name] = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1), pa.string()), x.shape[1])
            elif x.dtype == object:
                cols[name] = pa.array(x, pa.string())
            else:
                cols[name] = pa.array(x)
        cols["product_index"] = pa.array(rows["product_index"], pa.int32())
        cols["product_id"] = pa.array(rows["product_id"], pa.string())
        cols["weight"] = pa.array(rows["weight"], pa.float32())
        cols["event_timestamp"] = pa.array(rows["event_timestamp"], pa.timestamp("us", "UTC"))
        self._writer.write(pa.table(cols))
        self.rows += len(rows["weight"])

    def commit(self) -> None:
        self._writer.commit()
        self._writer = None

    @property
    def parts(self) -> list[Path]:
        return part_files(self.path / "examples")

    def read(self, part: Path) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """(query inputs, product index, weight) of one part, as the towers take them."""
        table = open_dataset(self.path / "examples", self.keys, parts=[part]).to_table()
        query = {}
        for name in table.column_names:
            if name in ROW_COLUMNS:
                continue
            col = table.column(name).combine_chunks()
            if pa.types.is_fixed_size_list(col.type):
                query[name] = col.flatten().to_numpy(zero_copy_only=False).reshape(-1, col.type.list_size)
            elif pa.types.is_string(col.type):
                query[name] = col.to_numpy(zero_copy_only=False)
            else:
                query[name] = col.to_numpy()
        return query, table.column("product_index").to_numpy(), table.column("weight").to_numpy()

    def batches(self, batch_size: int, seed: int, epoch: int) -> Iterator[dict]:
        """One epoch: every example once, in batches of `batch_size` (the last may be smaller)."""
        rng = np.random.default_rng([seed, epoch])
        parts = self.parts
        order = rng.permutation(len(parts))
        carry = None
        for g in range(0, len(order), MIX):
            chunks = [self.read(parts[i]) for i in order[g : g + MIX]]
            if carry is not None:
                chunks.insert(0, carry)
            query = {k: np.concatenate([c[0][k] for c in chunks]) for k in chunks[0][0]}
            product = np.concatenate([c[1] for c in chunks])
            weight = np.concatenate([c[2] for c in chunks])
            perm = rng.permutation(len(product))
            last = g + MIX >= len(order)
            full = len(perm) if last else len(perm) - len(perm) % batch_size
            for lo in range(0, full, batch_size):
                i = perm[lo : lo + batch_size]
                yield {"query": {k: v[i] for k, v in query.items()}, "product": product[i], "weight": weight[i]}
            rest = perm[full:]
            carry = ({k: v[rest] for k, v in query.items()}, product[rest], weight[rest]) if len(rest) else None

    def signature(self, tf) -> dict:
        """The `tf.data` element of `batches`."""
        query = {"client_id": tf.TensorSpec([None], tf.string)}
        for spec in self.specs:
            if spec.kind == BAG:
                query[spec.name] = tf.TensorSpec([None, BAG_LENGTH], tf.string)
            elif spec.kind == CATEGORICAL:
                query[spec.name] = tf.TensorSpec([None], tf.string)
            elif spec.kind == NUMERIC:
                query[spec.name] = tf.TensorSpec([None], tf.float32)
            else:
                query[spec.name] = tf.TensorSpec([None], tf.float64)
        if any(s.kind == TIMESTAMP for s in self.specs):
            query["as_of"] = tf.TensorSpec([None], tf.float64)
        return {"query": query, "product": tf.TensorSpec([None], tf.int32), "weight": tf.TensorSpec([None], tf.float32)}

    def save_as(self, target: Path) -> int:
        """The parts as the dataset `target` (hard links where the file system allows), swapped in whole."""
        stage = stage_of(target)
        shutil.rmtree(stage, ignore_errors=True)
        try:
            shutil.copytree(self.path / "examples", stage, copy_function=_link_or_copy)
        except OSError:
            shutil.rmtree(stage, ignore_errors=True)
            raise
        swap_in(stage, target)
        return self.rows


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)

