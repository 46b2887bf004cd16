"""Data building blocks: seeded sample keys and crops (:mod:`.common`), upper/lower splits (:mod:`.splits`), the
embedded and folder photos (:mod:`.photos`) and the data-source registry (:mod:`.sources`)."""

from .common import (
           DataError,
           DataNotFoundError,
           SampleKey,
           augment_pair,
           derive_seed,
           sample_generator,
           split_key,
)
from .photos import (
           EXTRA_TEST_IMAGES,
           MORE_TRAIN_IMAGES,
           TEST_IMAGES,
           TRAIN_IMAGES,
           FixedPairs,
           embedded_photo_names,
           list_images,
           load_skimage_photo,
)
from .sources import DataSource, SourceRegistry, parse_spec
from .splits import IndexedSubset, collate_samples, split_upper_lower

__all__ = ["DataError", "DataNotFoundError", "SampleKey", "augment_pair", "derive_seed", "sample_generator",
           "split_key", "EXTRA_TEST_IMAGES", "MORE_TRAIN_IMAGES", "TEST_IMAGES", "TRAIN_IMAGES", "FixedPairs", "embedded_photo_names", "list_images",
           "load_skimage_photo", "DataSource", "SourceRegistry", "parse_spec", "IndexedSubset", "collate_samples",
           "split_upper_lower"]
