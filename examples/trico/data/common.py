"""TriCo's data helpers: the restoration toolkit's :mod:`examples.restoration.data.common` (old import path)."""

from examples.restoration.data.common import (  # noqa: F401
    DataError,
    DataNotFoundError,
    SampleKey,
    augment_pair,
    centre_crop_box,
    derive_seed,
    progress,
    random_augment_code,
    random_crop_box,
    sample_generator,
    split_key,
)

__all__ = ["DataError", "DataNotFoundError", "progress", "SampleKey", "split_key", "sample_generator", "derive_seed",
           "random_crop_box", "centre_crop_box", "augment_pair", "random_augment_code"]
