"""``--network-veth``: a veth pair between the host and a machine's network namespace.

The names are nspawn's, so that systemd-networkd's stock 80-container-ve.network (host) and
80-container-host0.network (machine) match them: ``ve-NAME`` on the host (IFNAMSIZ allows 15
bytes, so NAME is cut to 12), ``host0`` inside. We also give both ends IPv4 addresses at once
(a /30 out of 10.231.0.0/16 picked by a hash of the name; host .1, machine .2, the machine's
default route via the host), so host and machine talk without networkd on either side; NAT to
the outside is left to the host's firewall. The work is done by iproute2's ``ip`` in two
batches (one per side, the machine's through ``nsenter --net``): pyroute2 costs ~150 ms to
import (docs/decisions.md, "Namespaces through ctypes"). The veth pair vanishes with the
machine's network namespace.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
import zlib

from rootstrap.errors import RunnerError

POOL = ipaddress.IPv4Network("10.231.0.0/16")
INNER = "host0"


def host_ifname(machine: str, bridge: str | None = None) -> str:
    """``ve-NAME`` (``vb-NAME`` on a bridge, as nspawn) cut to the kernel's 15-byte limit."""
    return ("vb-" if bridge else "ve-") + machine[:12]


def addresses(machine: str) -> tuple[str, str, int]:
    """(host address, machine address, prefix length) of the machine's /30."""
    slots = POOL.num_addresses // 4
    base = int(POOL.network_address) + (zlib.crc32(machine.encode()) % slots) * 4
    return str(ipaddress.IPv4Address(base + 1)), str(ipaddress.IPv4Address(base + 2)), 30


def _tool(name: str) -> str:
    path = shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if path is None:
        raise RunnerError(
            f"{name} is missing on the host", hint="apt-get install iproute2 util-linux"
        )
    return path


def _batch(argv: list[str], commands: list[str], subject: str) -> None:
    """Run ``ip -batch -`` (ARGV) with COMMANDS; the one subprocess helper of this module:
    a scrubbed environment, and an error that shows the command to rerun."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
    script = "\n".join(commands) + "\n"
    try:
        result = subprocess.run(
            argv, input=script, env=env, capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RunnerError(f"cannot run {argv[0]}: {exc}") from exc
    if result.returncode != 0:
        first = (result.stderr.strip().splitlines() or ["failed"])[0]
        raise RunnerError(
            f"network setup failed: {first}",
            subject=subject,
            hint="rerun by hand: printf '" + script.replace("\n", "\\n") + "' | " + " ".join(argv),
        )


def _links() -> set[str]:
    """Interface names in our network namespace (/proc/self/net/dev follows the namespace;
    /sys/class/net shows the one /sys was mounted in)."""
    with open("/proc/self/net/dev", encoding="ascii", errors="replace") as f:
        return {line.split(":", 1)[0].strip() for line in f.readlines()[2:]}


def _is_bridge(ip: str, name: str) -> bool:
    result = subprocess.run(
        [ip, "-o", "-d", "link", "show", "dev", name],
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    return result.returncode == 0 and " bridge " in result.stdout


def setup_veth(machine: str, pid: int, bridge: str | None = None) -> dict[str, object]:
    """Make ``ve-MACHINE`` on the host and ``host0`` in PID's network namespace, address and
    raise both. Returns the registry fields (ifname, host_address, address). A leftover
    ``ve-MACHINE`` of a machine that died is replaced. Cost: two ``ip`` runs, ~10 ms.

    With BRIDGE (``--network-bridge``): ``vb-MACHINE`` joins that host bridge instead and no
    address is set on either end (the bridge's network, DHCP or the machine's own config
    provides them, as with nspawn)."""
    ip, nsenter = _tool("ip"), _tool("nsenter")
    outer = host_ifname(machine, bridge)
    if outer in _links():
        _batch([ip, "-batch", "-"], [f"link del {outer}"], outer)
    if bridge is not None:
        if bridge not in _links() or not _is_bridge(ip, bridge):
            raise RunnerError(
                "no such bridge on the host", subject=bridge, hint="ip link add BR type bridge"
            )
        _batch(
            [ip, "-batch", "-"],
            [
                f"link add {outer} type veth peer name {INNER} netns {pid}",
                f"link set {outer} master {bridge}",
                f"link set {outer} up",
            ],
            outer,
        )
        _batch(
            [nsenter, f"--net=/proc/{pid}/ns/net", ip, "-batch", "-"],
            [f"link set {INNER} up"],
            outer,
        )
        return {"ifname": outer, "bridge": bridge}
    host, inner, prefix = addresses(machine)
    _batch(
        [ip, "-batch", "-"],
        [
            f"link add {outer} type veth peer name {INNER} netns {pid}",
            f"addr add {host}/{prefix} dev {outer}",
            f"link set {outer} up",
        ],
        outer,
    )
    _batch(
        [nsenter, f"--net=/proc/{pid}/ns/net", ip, "-batch", "-"],
        [
            f"addr add {inner}/{prefix} dev {INNER}",
            f"link set {INNER} up",
            f"route add default via {host}",
        ],
        outer,
    )
    return {"ifname": outer, "host_address": host, "address": inner}
