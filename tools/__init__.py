"""Developer tools run from a checkout: benchmarks (python -m tools.<name>) and pvfs2ctl."""
