"""Data for the TriCo example: RELLISUR, synthetic degradations, the embedded skimage set, splits."""

from examples.restoration.data.common import SampleKey, augment_pair, sample_generator, split_key
from examples.restoration.data.splits import IndexedSubset, collate_samples, split_upper_lower

from .embedded import TEST_IMAGES, TRAIN_IMAGES, FixedPairs, embedded_dataset, load_skimage_photo
from .rellisur import Rellisur, RellisurError, parse_lllr_name
from .synthetic import DegradationParams, SyntheticPairs, degrade, downscale, list_images

__all__ = [
    "SampleKey", "augment_pair", "sample_generator", "split_key",
    "TEST_IMAGES", "TRAIN_IMAGES", "FixedPairs", "embedded_dataset", "load_skimage_photo",
    "Rellisur", "RellisurError", "parse_lllr_name",
    "IndexedSubset", "collate_samples", "split_upper_lower",
    "DegradationParams", "SyntheticPairs", "degrade", "downscale", "list_images",
]
