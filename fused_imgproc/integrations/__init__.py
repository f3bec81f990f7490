"""Preprocessing datasets at scale: Hugging Face `datasets` and Ray Data (README "Scaling out").

`BatchPreprocessor` is one callable for both: a batched `Dataset.map` / `with_transform` function of `datasets` and a
`map_batches` class of Ray Data (constructed once per actor). `preprocess_to_shards` runs a list of image files
through Ray on several workers and writes one `.npz` shard per batch plus an index. Neither `datasets` nor `ray` is
imported by this package: Ray only by `preprocess_to_shards`, when it runs (`pip install "fused-imgproc[ray]"`).
"""

from .batch import BatchPreprocessor
from .shards import SHARD_INDEX, preprocess_to_shards, read_shards

__all__ = ["SHARD_INDEX", "BatchPreprocessor", "preprocess_to_shards", "read_shards"]
