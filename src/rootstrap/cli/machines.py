"""The container verbs, as `rootstrap --help` lists them.

They are served by cli/lean.py (a hand-written parser, no typer: their start-up time is a target),
which __main__ routes them to before typer is ever imported. These entries exist so the typer help
lists them too; reached at all, they hand their arguments to the lean path unchanged.
"""

from __future__ import annotations

import typer

VERBS = {
    "run": "Run a command in an image in new namespaces (systemd-nspawn's options).",
    "boot": "Boot an image: its init as PID 1, the console on this terminal.",
    "shell": "Run a shell or a command in a running machine.",
    "list": "List the running machines.",
    "poweroff": "Power a running machine off cleanly.",
    "reboot": "Reboot a running machine.",
    "terminate": "Kill every process of a running machine at once.",
    "kill": "Send a signal to a running machine's processes.",
    "start": "Boot machines in the background, the console to a log.",
    "stop": "Power machines off and wait until they are gone.",
    "login": "Attach to a background machine's console (Ctrl-] x3 detaches).",
    "status": "A machine's state, leader, OS, addresses and last console lines.",
    "enable": "Start a machine at host boot (a rootstrap@NAME.service unit).",
    "disable": "No longer start a machine at host boot.",
    "show": "The effective settings of a machine (.nspawn files and options).",
}


def register(app: typer.Typer) -> None:
    for verb, text in VERBS.items():
        _add(app, verb, text)


def _add(app: typer.Typer, verb: str, text: str) -> None:
    @app.command(
        verb,
        help=f"{text} See 'rootstrap {verb} --help'.",
        add_help_option=False,
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )
    def lean(ctx: typer.Context) -> None:
        from rootstrap.cli.lean import main

        raise typer.Exit(main([verb, *ctx.args]))
