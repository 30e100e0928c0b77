"""The two towers: an id embedding plus every feature of a feature service, into one vector.

Both towers are the same class. The query tower embeds a client from `client_id` and the query
tower service's features as of the query time (`as_of`); the candidate tower embeds a product
from `product_id` and the catalog's features. Categories get embeddings (unknown values share an
out-of-vocabulary row), numbers are normalized with statistics fitted on the training data,
times become log-days before `as_of`, lists of ids (recent products) are embedded and averaged.
Output vectors are L2-normalized: scores are cosines.
"""

from __future__ import annotations

import math

import tensorflow as tf
import tf_keras as keras

from atelier.models.recommend.inputs import BAG, CATEGORICAL, NUMERIC, TIMESTAMP, FeatureSpec


def _embedding_dim(vocabulary_size: int, cap: int) -> int:
    return int(min(cap, max(4, round(1.6 * vocabulary_size**0.56))))


class Tower(keras.Model):
    def __init__(
        self,
        id_name: str,
        id_vocabulary: list[str],
        specs: list[FeatureSpec],
        *,
        id_dim: int = 32,
        feature_dim: int = 16,
        hidden: tuple[int, ...] = (128,),
        output_dim: int = 64,
        seed: int = 7,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.id_name = id_name
        self.specs = specs
        init = lambda i: keras.initializers.GlorotUniform(seed=seed + i)
        self.id_lookup = keras.layers.StringLookup(vocabulary=list(id_vocabulary), mask_token=None, num_oov_indices=1)
        self.id_embedding = keras.layers.Embedding(len(id_vocabulary) + 1, id_dim, embeddings_initializer=keras.initializers.RandomNormal(0, 0.05, seed=seed))
        self.lookups, self.embeddings = {}, {}
        for i, s in enumerate(specs):
            if s.kind == CATEGORICAL:
                self.lookups[s.name] = keras.layers.StringLookup(vocabulary=s.vocabulary or ["__none__"], mask_token=None, num_oov_indices=1)
                self.embeddings[s.name] = keras.layers.Embedding(max(len(s.vocabulary), 1) + 1, _embedding_dim(len(s.vocabulary) + 1, feature_dim), embeddings_initializer=keras.initializers.RandomNormal(0, 0.05, seed=seed + 100 + i))
        self.bags, self.bag_embeddings = {}, {}
        for i, s in enumerate(specs):
            if s.kind == BAG:
                # "" pads a short list: index 0, masked out of the mean
                self.bags[s.name] = keras.layers.StringLookup(vocabulary=s.vocabulary or ["__none__"], mask_token="", num_oov_indices=1)
                self.bag_embeddings[s.name] = keras.layers.Embedding(max(len(s.vocabulary), 1) + 2, 2 * feature_dim, embeddings_initializer=keras.initializers.RandomNormal(0, 0.05, seed=seed + 200 + i))
        self.numeric = [s for s in specs if s.kind in (NUMERIC, TIMESTAMP)]
        self.dense = keras.Sequential(
            [keras.layers.Dense(h, activation="relu", kernel_initializer=init(j)) for j, h in enumerate(hidden)]
            + [keras.layers.Dense(output_dim, kernel_initializer=init(99))]
        )

    def _numeric(self, inputs) -> tf.Tensor | None:
        columns = []
        for s in self.numeric:
            x = tf.cast(inputs[s.name], tf.float64)
            if s.kind == TIMESTAMP:
                days = (tf.cast(inputs["as_of"], tf.float64) - x) / 86400.0
                missing = tf.math.is_nan(days)
                v = tf.math.log1p(tf.where(missing, tf.constant(3650.0, tf.float64), tf.maximum(days, 0.0)))
                columns.append(tf.cast(missing, tf.float32))
            else:
                v = tf.where(tf.math.is_nan(x), tf.zeros_like(x), x)
                if s.log:
                    v = tf.math.log1p(tf.maximum(v, 0.0))
            columns.append(tf.cast((v - s.mean) / math.sqrt(s.variance), tf.float32))
        return tf.stack(columns, axis=1) if columns else None

    def call(self, inputs, training=False):
        parts = [self.id_embedding(self.id_lookup(inputs[self.id_name]))]
        for name, lookup in self.lookups.items():
            parts.append(self.embeddings[name](lookup(inputs[name])))
        for name, lookup in self.bags.items():
            ids = lookup(inputs[name])
            mask = tf.cast(tf.not_equal(ids, 0), tf.float32)[:, :, None]
            total = tf.reduce_sum(self.bag_embeddings[name](ids) * mask, axis=1)
            parts.append(total / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0))
        numeric = self._numeric(inputs)
        if numeric is not None:
            parts.append(numeric)
        return tf.math.l2_normalize(self.dense(tf.concat(parts, axis=1)), axis=1)
