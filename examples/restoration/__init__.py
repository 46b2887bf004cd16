"""A toolkit for coupled image-restoration tasks built on hyperlevel (TriCo and the tasks after it).

Modules (each small, with one job; ``docs/restoration_toolkit.md`` says how a task plugs into each):

- :mod:`.imageio`: read/write images (8/16-bit, TIFF, grey/alpha/palette, EXIF orientation) as float tensors;
- :mod:`.tiling`: tiled inference of any image-to-image callable, blended seams;
- :mod:`.self_ensemble`: the x8 geometric self-ensemble of any image-to-image callable;
- :mod:`.metrics`: the metric registry (needs-target, lower-is-better, parameters or skip reason) and the
  accumulator that measures a data set;
- :mod:`.data`: seeded sample keys and crops, upper/lower splits, the embedded photos, the data-source registry;
- :mod:`.degradations`: elementary degradation maps, seeded draws, the degradation registry;
- :mod:`.config`: typed YAML <-> dataclasses with errors naming the key;
- :mod:`.checkpoint`: model-agnostic checkpoints (a task registers its model builder);
- :mod:`.registry`: the name -> entry registry behind all of them.

Nothing here imports a task; tasks import this and ``hyperlevel``'s public API.
"""
