"""A real FUSE mount driven by real programs (issue 6).

Skipped, with the reason, where /dev/fuse is missing or pyfuse3 does not import.
"""
