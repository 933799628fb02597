"""The namespace runner: run a command in a root filesystem, like a small systemd-nspawn.

Public API (Debian-agnostic; the bootstrap's configure stage hands it a root and a command)::

    Bind(source, target, readonly=False)
    RunSpec(root, argv, env={}, hostname=None, binds=(), tmpfs=(), cwd="/", user=None, ...)
    run(spec) -> int          # the command's exit status, 128+N when killed by signal N

``run`` raises RunnerError for a setup problem (naming the path), ImageBusy when the image is
locked by a conflicting user, RunnerError with exit_code 127 when the command is not found.
The package imports only the standard library, rootstrap.linux and rootstrap.errors (the import
contracts of docs/architecture.md). This module only re-exports; the code is in container.py and
the modules beside it.
"""

from rootstrap.runner.container import CONSOLE_MODES, Bind, Hooks, RunSpec, pick_uid_range, run

__all__ = ["CONSOLE_MODES", "Bind", "Hooks", "RunSpec", "pick_uid_range", "run"]
