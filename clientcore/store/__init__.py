"""Stores a client-core serves: the interface (:mod:`.api`) and the embedded store."""

from .api import ROOT, Attr, Creds, StatFs, Store, StoreError  # noqa: F401
