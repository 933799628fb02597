"""Capability names, nspawn's default bounding set, and dropping to a set before exec."""

from __future__ import annotations

from rootstrap.linux import syscalls

NAMES = (
    "CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP "
    "LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER "
    "SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE "
    "SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP "
    "MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF "
    "CHECKPOINT_RESTORE"
).split()
NUMBERS = {name: number for number, name in enumerate(NAMES)}

# systemd-nspawn's default retained set (man systemd-nspawn, --capability=); NET_ADMIN is
# added with a private network. `boot` keeps exactly this set.
NSPAWN_DEFAULT = frozenset(
    "AUDIT_CONTROL AUDIT_WRITE CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID IPC_OWNER KILL "
    "LEASE LINUX_IMMUTABLE MKNOD NET_BIND_SERVICE NET_BROADCAST NET_RAW SETFCAP SETGID SETPCAP "
    "SETUID SYS_ADMIN SYS_BOOT SYS_CHROOT SYS_NICE SYS_PTRACE SYS_RESOURCE SYS_TTY_CONFIG".split()
)
# `run` drops SYS_ADMIN as well: without a user namespace it is root on the host (nspawn's own
# man page: "this sandbox can easily be circumvented"), and without it the read-only /sys and
# /proc/sys, the /proc masks and the tmpfs /dev cannot be unmounted or remounted from inside
# (HAZARDS 83-85). `--capability=CAP_SYS_ADMIN` brings it back.
RUN_DEFAULT = NSPAWN_DEFAULT - {"SYS_ADMIN"}


def last_cap() -> int:
    """The highest capability number this kernel knows."""
    try:
        with open("/proc/sys/kernel/cap_last_cap", "rb") as f:
            return int(f.read())
    except OSError:
        return len(NAMES) - 1


def parse(names: str) -> frozenset[str]:
    """Parse nspawn's comma-separated ``CAP_X,CAP_Y`` (or ``all``) into bare names.

    Raises ValueError naming the unknown capability."""
    out: set[str] = set()
    for raw in names.replace(" ", ",").split(","):
        item = raw.strip().upper()
        if not item:
            continue
        if item == "ALL":
            out.update(NAMES[: last_cap() + 1])
            continue
        bare = item.removeprefix("CAP_")
        if bare not in NUMBERS:
            raise ValueError(f"unknown capability {raw.strip()!r}")
        out.add(bare)
    return frozenset(out)


def mask(names: frozenset[str]) -> int:
    value = 0
    for name in names:
        value |= 1 << NUMBERS[name]
    return value


def drop_bounding(keep: frozenset[str]) -> None:
    """Remove every capability not in KEEP from the bounding set (needs CAP_SETPCAP).

    After execve a root payload gets permitted = effective = bounding set, which is what
    `/proc/self/status` CapBnd/CapEff then show (HAZARDS 82)."""
    keep_mask = mask(keep)
    for number in range(last_cap() + 1):
        if not keep_mask & (1 << number):
            syscalls.prctl(syscalls.PR_CAPBSET_DROP, number)


def restrict(keep: frozenset[str]) -> None:
    """Limit effective/permitted/inheritable to KEEP and clear the ambient set."""
    keep_mask = mask(keep)
    try:
        syscalls.prctl(syscalls.PR_CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_CLEAR_ALL)
    except OSError:
        pass  # kernels before 4.3 have no ambient set
    with open("/proc/self/status", "rb") as f:
        status = f.read()
    effective = permitted = 0
    for line in status.splitlines():
        if line.startswith(b"CapEff:"):
            effective = int(line.split()[1], 16)
        elif line.startswith(b"CapPrm:"):
            permitted = int(line.split()[1], 16)
    syscalls.capset(effective & keep_mask, permitted & keep_mask, 0)
