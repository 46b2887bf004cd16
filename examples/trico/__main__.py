"""``python -m examples.trico COMMAND``: see ``examples/trico/cli.py``."""

from .cli import main

raise SystemExit(main())
