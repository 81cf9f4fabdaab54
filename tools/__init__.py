"""Developer tools run from a checkout: the benchmarks (python -m tools.bench[.<name>]), pvfs2ctl, the fuzz entry."""
