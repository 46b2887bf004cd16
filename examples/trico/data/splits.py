"""TriCo's upper/lower split: the restoration toolkit's :mod:`examples.restoration.data.splits` (old path)."""

from examples.restoration.data.splits import IndexedSubset, collate_samples, split_upper_lower

__all__ = ["IndexedSubset", "split_upper_lower", "collate_samples"]
