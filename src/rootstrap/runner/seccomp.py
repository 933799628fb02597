"""The system call filter: nspawn's exclusions plus the user's list, through libseccomp.

nspawn (src/nspawn/nspawn-seccomp.c) uses an allow-list; we use the equivalent deny-list so
unknown new syscalls keep working: everything nspawn knowingly excludes is denied with EPERM,
cap-gated groups are denied unless the capability is kept, and ``ioctl(TIOCSTI)`` /
``ioctl(TIOCLINUX)`` are denied comparing only the low 32 bits of the request, because the
kernel ignores the high bits (CVE-2017-5226, and its high-bits variant CVE-2019-10063).
libseccomp is loaded with ctypes (libseccomp2 is part of every Debian system); its default of
setting no_new_privs is turned off, NNP is a separate option (docs/decisions.md, "Namespaces
through ctypes").
"""

from __future__ import annotations

import ctypes
import errno
import os

_GROUP_LISTS: dict[str, list[str]] = {
    "@clock": (
        "adjtimex clock_adjtime clock_adjtime64 clock_settime clock_settime64 settimeofday stime"
    ).split(),
    "@cpu-emulation": "modify_ldt subpage_prot switch_endian vm86 vm86old".split(),
    "@debug": (
        "lookup_dcookie perf_event_open pidfd_getfd ptrace rtas s390_runtime_instr "
        "sys_debug_setcontext"
    ).split(),
    "@keyring": "add_key keyctl request_key".split(),
    "@module": "delete_module finit_module init_module".split(),
    "@mount": (
        "chroot fsconfig fsmount fsopen fspick mount mount_setattr move_mount open_tree "
        "pivot_root umount umount2"
    ).split(),
    "@obsolete": (
        "_sysctl afs_syscall bdflush break create_module ftime get_kernel_syms getpmsg gtty "
        "idle lock mpx prof profil putpmsg query_module security sgetmask ssetmask stty sysfs "
        "tuxcall ulimit uselib ustat vserver"
    ).split(),
    "@pkey": "pkey_alloc pkey_free pkey_mprotect".split(),
    "@raw-io": (
        "ioperm iopl pciconfig_iobase pciconfig_read pciconfig_write s390_pci_mmio_read "
        "s390_pci_mmio_write"
    ).split(),
    "@reboot": "kexec_file_load kexec_load reboot".split(),
    "@swap": "swapoff swapon".split(),
}
GROUPS: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in _GROUP_LISTS.items()}

# What nspawn knowingly leaves out of its allow-list, whatever the capabilities.
NSPAWN_DENY = (
    "@cpu-emulation @keyring @obsolete @pkey @swap bpf fanotify_init fanotify_mark "
    "kexec_file_load kexec_load lookup_dcookie nfsservctl open_by_handle_at perf_event_open "
    "quotactl quotactl_fd"
).split()
# Denied unless the capability is in the bounding set (nspawn-seccomp.c).
CAP_GATED = {
    "SYS_TIME": ("@clock",),
    "SYS_MODULE": ("@module",),
    "SYS_RAWIO": ("@raw-io",),
    "SYS_PACCT": ("acct",),
    "SYS_PTRACE": ("ptrace", "process_vm_readv", "process_vm_writev"),
    "SYS_BOOT": ("reboot",),
    "SYSLOG": ("syslog",),
    "SYS_TTY_CONFIG": ("vhangup",),
}

TIOCSTI = 0x5412
TIOCLINUX = 0x541C

_ACT_ALLOW = 0x7FFF0000
_ACT_ERRNO = 0x00050000
_FLTATR_CTL_NNP = 3
_CMP_MASKED_EQ = 7
_SECONDARY_ARCHES = {"x86_64": ("x86", "x32"), "aarch64": ("arm",)}


class _ArgCmp(ctypes.Structure):
    _fields_ = (
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    )


def expand(items: list[str]) -> set[str]:
    """Names and @groups to syscall names. Raises ValueError for an unknown group."""
    out: set[str] = set()
    for item in items:
        if item.startswith("@"):
            if item not in GROUPS:
                raise ValueError(f"unknown system call group {item!r}")
            out.update(GROUPS[item])
        else:
            out.add(item)
    return out


def parse_filter(specs: list[str]) -> tuple[set[str], set[str]]:
    """nspawn's ``--system-call-filter=`` values to (allow, deny) sets of names and groups.

    Each value is a space-separated list; a leading ``~`` makes the whole value a deny list,
    and ``~name`` denies one entry."""
    allow: set[str] = set()
    deny: set[str] = set()
    for spec in specs:
        spec = spec.strip()
        negate = spec.startswith("~")
        for word in spec.removeprefix("~").split():
            target = deny if negate or word.startswith("~") else allow
            target.add(word.removeprefix("~"))
    expand(sorted(allow | deny))  # validates group names
    return allow, deny


def denied_syscalls(keep_caps: frozenset[str], allow: set[str], deny: set[str]) -> set[str]:
    """The names the filter returns EPERM for."""
    base = list(NSPAWN_DENY)
    for cap, names in CAP_GATED.items():
        if cap not in keep_caps:
            base.extend(names)
    return (expand(base) - expand(sorted(allow))) | expand(sorted(deny))


_lib: ctypes.CDLL | None = None


def _libseccomp() -> ctypes.CDLL:
    global _lib
    if _lib is None:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
        lib.seccomp_init.restype = ctypes.c_void_p
        lib.seccomp_init.argtypes = (ctypes.c_uint32,)
        lib.seccomp_release.argtypes = (ctypes.c_void_p,)
        lib.seccomp_attr_set.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32)
        lib.seccomp_arch_resolve_name.argtypes = (ctypes.c_char_p,)
        lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
        lib.seccomp_arch_add.argtypes = (ctypes.c_void_p, ctypes.c_uint32)
        lib.seccomp_syscall_resolve_name.argtypes = (ctypes.c_char_p,)
        lib.seccomp_rule_add_array.argtypes = (
            ctypes.c_void_p,
            ctypes.c_uint32,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.POINTER(_ArgCmp),
        )
        lib.seccomp_load.argtypes = (ctypes.c_void_p,)
        _lib = lib
    return _lib


def preload() -> None:
    """Load libseccomp now (in the host process), so children never dlopen it."""
    _libseccomp()


class Filter:
    """A compiled filter denying DENIED with EPERM (plus TIOCSTI/TIOCLINUX).

    Build it while the host's libraries are visible; :meth:`load` only makes the seccomp(2)
    call, so it is safe after pivot_root. Cost: ~1 ms to build. Raises OSError."""

    def __init__(self, denied: set[str]) -> None:
        lib = self._lib = _libseccomp()
        ctx = lib.seccomp_init(_ACT_ALLOW)
        if not ctx:
            raise OSError(errno.ENOMEM, "seccomp_init failed")
        self._ctx = ctx
        lib.seccomp_attr_set(ctx, _FLTATR_CTL_NNP, 0)
        for arch in _SECONDARY_ARCHES.get(os.uname().machine, ()):
            token = lib.seccomp_arch_resolve_name(arch.encode())
            if token:
                lib.seccomp_arch_add(ctx, token)  # EEXIST or unsupported: fine
        eperm = _ACT_ERRNO | errno.EPERM
        for name in sorted(denied):
            nr = lib.seccomp_syscall_resolve_name(name.encode())
            if nr == -1:  # __NR_SCMP_ERROR: not a syscall on this architecture
                continue
            rc = lib.seccomp_rule_add_array(ctx, eperm, nr, 0, None)
            if rc < 0 and rc != -errno.EEXIST:
                raise OSError(-rc, f"seccomp rule for {name}: {os.strerror(-rc)}")
        ioctl = lib.seccomp_syscall_resolve_name(b"ioctl")
        for request in (TIOCSTI, TIOCLINUX):
            cmp = _ArgCmp(1, _CMP_MASKED_EQ, 0xFFFFFFFF, request)
            rc = lib.seccomp_rule_add_array(ctx, eperm, ioctl, 1, ctypes.byref(cmp))
            if rc < 0:
                raise OSError(-rc, f"seccomp rule for ioctl: {os.strerror(-rc)}")

    def load(self) -> None:
        """Install the filter on this thread (kept across fork and execve)."""
        rc = self._lib.seccomp_load(self._ctx)
        if rc < 0:
            raise OSError(-rc, f"seccomp_load: {os.strerror(-rc)}")
