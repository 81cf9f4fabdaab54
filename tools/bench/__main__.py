"""``python -m tools.bench``: the same as ``pvfs2ctl bench``."""

from .cli import main

main()
