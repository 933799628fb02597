"""Linux itself: syscalls through ctypes, in-root path resolution, locks, signals.

The bottom layer: the standard library, ctypes and rootstrap.errors only. Nothing here knows
Debian, images or containers; everything above leans on it for the system calls Python 3.11
lacks (unshare, setns, pivot_root, open_tree, mount_setattr) and for opening paths inside a
root without following a link out of it.
"""
