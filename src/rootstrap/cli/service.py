"""``rootstrap start`` and ``stop``: machines as services (the supervisor and the waiting are
rootstrap.machines.supervisor's; ``login`` and ``status``: cli/running.py).

``start NAME... [boot options]`` takes boot's words (systemd-nspawn's options, read by
cli/lean.py) with every bare word an image; ``stop NAME...`` only names. Lean: no typer.
"""

from __future__ import annotations

from rootstrap.cli.options import parse
from rootstrap.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootstrap.cli.options import Globals, Parsed

START_TEXT = """start boots each image in the background, with boot's options (see
'rootstrap boot --help'), the console to /var/log/rootstrap/NAME.log; it returns when every
machine is up (READY=1 from its init), or fails after --timeout seconds (default 90).
--no-block returns once the machines are registered. Then: 'rootstrap status NAME',
'rootstrap login NAME'.
"""
STOP_TEXT = """stop powers machines off (SIGRTMIN+4 to each init, as machinectl poweroff) and waits
until they are gone, up to --timeout seconds (default 90); then it kills them and fails.
"""


def _seconds(p: Parsed, default: float) -> float:
    value = p.value("timeout")
    if value is None:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise UsageError("--timeout takes a number of seconds", subject=value)
    return seconds


def start_main(p: Parsed, store: str) -> int:
    """``rootstrap start NAME... [boot options]``: 0 when every machine is up, else the
    first failure's exit code after reporting each failure."""
    from rootstrap.cli import lean, report
    from rootstrap.machines import supervisor

    timeout = _seconds(p, supervisor.START_TIMEOUT)
    directory = "directory" in p.values
    if not p.bare and not directory:
        raise UsageError("start needs an image name", hint="rootstrap start NAME...")
    if len(p.bare) > 1 and "machine" in p.values:
        raise UsageError("-M names one machine: start one image with it")
    plans = [
        lean.plan(lean.prepare(p, name or None, p.rest, store, "start"), "start")
        for name in p.bare or [""]
    ]
    failed = 0
    for exc in supervisor.start(plans, timeout, block=not p.flag("no_block")):
        failed = failed or exc.exit_code
        report(exc, debug=False)
    return failed


def stop_main(p: Parsed) -> int:
    """``rootstrap stop NAME...``: power off, wait for the supervisors to clean up."""
    from rootstrap.machines import supervisor

    timeout = _seconds(p, supervisor.STOP_TIMEOUT)
    names = p.names()
    if not names:
        raise UsageError("stop needs a machine name", hint="rootstrap stop NAME...")
    supervisor.stop(names, timeout, block=not p.flag("no_block"))
    return 0


def main(verb: str, args: list[str], g: Globals) -> int:
    from rootstrap.cli.verbs import BY_NAME

    entry = BY_NAME[verb]
    p = parse(verb, args, entry.options)
    if p.help or (verb == "stop" and not args):
        print(entry.usage(START_TEXT if verb == "start" else STOP_TEXT), end="")
        return 0 if args else 2
    return start_main(p, g.store) if verb == "start" else stop_main(p)
