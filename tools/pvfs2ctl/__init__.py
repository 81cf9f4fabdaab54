"""pvfs2ctl: look inside the emulated kernel module and drive it (issue 5 adds the CLI).

* :mod:`.client`  the VFS-channel and control-channel clients
"""
