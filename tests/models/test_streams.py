"""A dataset streamed from Python holds its data weakly: TensorFlow keeps a `from_generator`'s
function until the process ends, and what it held strongly stayed resident under every later step."""

import gc
import weakref

import numpy as np
import pytest
import tensorflow as tf

from atelier.models.streams import weakly_streamed


class _Rows(list):
    pass


def test_a_streamed_dataset_reads_its_owner_then_lets_it_go_and_says_so_if_read_after():
    rows = _Rows([np.arange(3, dtype=np.float32), np.ones(2, np.float32)])
    ds = weakly_streamed(rows, iter, tf.TensorSpec([None], tf.float32))
    assert [x.numpy().tolist() for x in ds] == [[0.0, 1.0, 2.0], [1.0, 1.0]]
    assert [x.numpy().tolist() for x in ds][1] == [1.0, 1.0]  # read again while held
    held = weakref.ref(rows)
    del rows
    gc.collect()
    assert held() is None
    with pytest.raises(tf.errors.OpError, match="_Rows this dataset streams was released before it was read"):
        list(ds)
