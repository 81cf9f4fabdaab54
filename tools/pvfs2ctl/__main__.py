"""``python -m pvfs2ctl``: the same as the ``pvfs2ctl`` command."""

from .cli import main

main()
