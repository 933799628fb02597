"""``rootstrap enable`` / ``disable``: words in, rootstrap.machines.units' transaction, its
messages out (systemctl's ``Created symlink ...`` lines go to stderr, as systemctl prints
them). Without systemd as PID 1, enable prints the unit on stdout and fails, saying so.
Lean: no typer.
"""

from __future__ import annotations

import os
import sys

from rootstrap.cli.options import parse
from rootstrap.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootstrap.cli.options import Globals

TEXT = """Make images boot with the host (enable) or stop doing so (disable), as machinectl does:
install the template unit rootstrap@.service and link rootstrap@NAME.service into
machines.target. Needs systemd as PID 1, except with --root.
"""


def _check_names(verb: str, names: list[str], store: str) -> None:
    """Enable needs each image in STORE; disable only a valid name (an image that is gone
    must still be disableable, and its unit link is all that is left of it)."""
    from rootstrap.cli.lean import resolve_image
    from rootstrap.errors import ImageNotFound
    from rootstrap.rules import check_machine_name

    for name in names:
        check_machine_name(name)  # the unit's instance is the machine's name (machinectl's rule)
        try:
            resolve_image(store, name)
        except ImageNotFound:
            if verb == "enable":
                raise


def main(verb: str, args: list[str], g: Globals) -> int:
    """``rootstrap enable|disable [--now] [--root DIR] NAME...``; 0 or raises."""
    from rootstrap.cli.verbs import BY_NAME

    entry = BY_NAME[verb]
    p = parse(verb, args, entry.options)
    if p.help:
        print(entry.usage(TEXT), end="")
        return 0
    now, root, names = p.flag("now"), p.value("root"), p.names()
    if root is not None:
        if not root:
            raise UsageError("--root needs a directory", hint=f"rootstrap {verb} --root DIR NAME")
        root = os.path.abspath(root)  # systemctl --root wants an absolute path
    if not names:
        raise UsageError(f"{verb} needs at least one image name", hint=entry.synopsis)
    if now and root is not None:
        raise UsageError(
            "--now cannot be used with --root",
            hint="--root links units offline; nothing runs in that root to start them",
        )
    from rootstrap.machines import unitfile, units

    store = os.path.abspath(g.store)
    _check_names(verb, names, store)
    if root is None and not units.booted():
        if verb == "enable":
            sys.stdout.write(unitfile.render(unitfile.executable(), store))
            sys.stdout.flush()
        raise units.not_booted(verb, names, store)
    if verb == "enable":
        sys.stderr.writelines(units.enable(names, store, root=root))
        if now:
            sys.stderr.flush()
            sys.stderr.writelines(units.start(names))
    else:
        sys.stderr.writelines(units.disable(names, root=root, now=now))
    return 0
