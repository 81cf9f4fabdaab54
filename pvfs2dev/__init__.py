"""pvfs2dev: the emulated OrangeFS kernel module (the broker).

* :mod:`.kernel`  the sans-IO core: request list, in-progress table, ops, slot
  maps, mounts, service_operation, device calls (no awaits; callers pass now)
* :mod:`.op`, :mod:`.lists`, :mod:`.bufmap`, :mod:`.params`, :mod:`.stats`  its parts
* :mod:`.broker`  the core plus trio: deadlines, wake-ups, buffers, trace fan-out
* :mod:`.vfs`  the VFS glue: FILE_IO chunking, readdir slots, mount and umount
* :mod:`.device_server`, :mod:`.vfs_server`, :mod:`.control_server`  the three sockets
* :mod:`.recorder`  byte-level recording at the device edge (``pvfs2ctl trace --record``)
* :mod:`.replay`  ``pvfs2dev replay``: the kernel's side of a recording against any client-core
* :mod:`.server`, :mod:`.cli`  running it: ``pvfs2dev serve``
"""
