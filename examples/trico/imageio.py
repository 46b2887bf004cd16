"""TriCo's image I/O: the restoration toolkit's :mod:`examples.restoration.imageio` (this old path keeps working)."""

from examples.restoration.imageio import (  # noqa: F401  (re-exports, incl. the PNG decoder tests use)
    IMAGE_EXTENSIONS,
    ImageReadError,
    _read_png16,
    is_image_file,
    probe_image,
    read_image,
    to_numpy_hwc,
    unfilter_png_rows,
    write_image,
)

__all__ = ["IMAGE_EXTENSIONS", "ImageReadError", "is_image_file", "read_image", "write_image", "to_numpy_hwc",
           "probe_image", "unfilter_png_rows"]
