"""The host's Debian architecture: one answer per process, for every verb that needs one.

``host_arch()`` maps the kernel's machine name (``uname -m``) to Debian's, and the
interpreter's word size, byte order and float ABI decide where the machine name alone cannot:
x86_64 with an i386 userland, armhf or armel, mips64el or mipsel. That is the userland's ABI,
what ``dpkg --print-architecture`` answers (tests/unit/test_rules.py holds the two to each
other on the test host), without asking the host's dpkg: a bootstrap's first stage needs
nothing of the host's dpkg (tests/integration/test_ubuntu_zstd.py), and it costs no fork.
"""

from __future__ import annotations

import os
import sys

_cached: str | None = None

# uname -m -> Debian, where the name alone decides (dpkg's cputable and ostable, and the
# kernel's arch/*/Makefile UTS_MACHINE values).
_PLAIN = {
    "i386": "i386",
    "i486": "i386",
    "i586": "i386",
    "i686": "i386",
    "ppc64le": "ppc64el",
    "ppc": "powerpc",
    "powerpc": "powerpc",
    "riscv64": "riscv64",
    "loongarch64": "loong64",
    "alpha": "alpha",
    "ia64": "ia64",
    "m68k": "m68k",
    "parisc": "hppa",
    "parisc64": "hppa",
    "sh4": "sh4",
    "sh4a": "sh4",
    "sparc64": "sparc64",
}


def from_uname(
    machine: str, *, bits: int = 64, byteorder: str = "little", hard_float: bool = True
) -> str:
    """Debian's name for the kernel's MACHINE (``uname -m``) running a userland of BITS
    (32 or 64), BYTEORDER ("little" or "big") and, on ARM, HARD_FLOAT (armhf, else armel).
    An unknown MACHINE is returned as it is."""
    if machine in _PLAIN:
        return _PLAIN[machine]
    if machine in ("x86_64", "amd64"):
        return "amd64" if bits == 64 else "i386"
    arm32 = "armhf" if hard_float else "armel"
    if machine in ("aarch64", "arm64"):
        return "arm64" if bits == 64 else arm32
    if machine.startswith("arm"):  # armv5tel, armv6l, armv7l, armv8l (32-bit on ARMv8)
        return arm32
    if machine == "ppc64":
        return "ppc64" if bits == 64 else "powerpc"
    if machine in ("s390x", "s390"):
        return "s390x" if bits == 64 and machine == "s390x" else "s390"
    if machine in ("mips64", "mips"):
        little = byteorder == "little"
        if machine == "mips64" and bits == 64:
            return "mips64el" if little else "mips64"
        return "mipsel" if little else "mips"
    return machine


# Debian -> the name qemu-user's binfmt handlers carry (/proc/sys/fs/binfmt_misc/qemu-NAME,
# from qemu's scripts/qemu-binfmt-conf.sh); where the two agree the name is not listed.
_QEMU = {
    "amd64": "x86_64",
    "arm64": "aarch64",
    "armhf": "arm",
    "armel": "arm",
    "ppc64el": "ppc64le",
    "powerpc": "ppc",
    "loong64": "loongarch64",
}


def qemu_name(arch: str) -> str:
    """The qemu-user name of the Debian architecture ARCH (``armhf`` -> ``arm``), as its
    binfmt_misc handler is called: ``qemu-NAME``."""
    return _QEMU.get(arch, arch)


def host_arch() -> str:
    """The host's Debian architecture (``amd64``, ``arm64``, ``ppc64el``, ...):
    ``from_uname()`` of this kernel and interpreter. Computed once per process."""
    global _cached
    if _cached is None:
        _cached = from_uname(
            os.uname().machine,
            bits=64 if sys.maxsize > 2**32 else 32,
            byteorder=sys.byteorder,
            # Debian's armhf userland has its own dynamic loader; armel has the plain one.
            hard_float=os.path.exists("/lib/ld-linux-armhf.so.3"),
        )
    return _cached
