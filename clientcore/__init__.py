"""clientcore: the client-core daemon's side of /dev/pvfs2-req.

* :mod:`.device`   the device channel as a trio object, and the start-up handshake
* :mod:`.minimal`  a responder that answers every upcall at once (tests, benchmarks)
"""
