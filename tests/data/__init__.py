"""Recordings replayed by the tests, and the script that makes them (make_recordings.py)."""
