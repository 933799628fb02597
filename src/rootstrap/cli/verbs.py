"""The one registry of verbs: what routing (rootstrap/__main__.py), ``rootstrap --help`` and
shell completion (cli/complete.py) read.

Each verb names its door and the module that serves it:

- ``lean``: the hand parser of cli/options.py, no typer. The module has
  ``main(verb, args, globals) -> int``. These are the verbs whose start-up is measured
  (``run``, ``boot``, ``start``, ``show``: systemd-nspawn's grammar) and the machinectl-style
  verbs (``list-images`` has a 0.2 s budget; typer's import alone takes 0.1-0.3 s here: see
  bench/README.md, "Start-up").
- ``typer``: cli/app.py's typer app. The module has ``register(app)``.

OPTIONS (lean verbs) are keys of cli/options.py's table; typer verbs declare theirs in typer.
COMPLETE says what a shell completes for the verb's bare words, by position: ``image`` (the
store's), ``machine`` (running ones), ``choice:a,b``, or nothing (files); a trailing ``...``
repeats the last kind.

A plain module (no typer, no typing at run time): every invocation imports it.
"""

from __future__ import annotations

from rootstrap.cli.options import GLOBAL, NSPAWN, options_help


class Verb:
    """One verb: NAME, the door and MODULE (rootstrap.cli.MODULE) serving it, its one-line
    HELP and GROUP in ``rootstrap --help``, and for lean verbs their SYNOPSIS and OPTIONS."""

    __slots__ = (
        "complete",
        "door",
        "group",
        "help",
        "hidden",
        "module",
        "name",
        "options",
        "synopsis",
    )

    def __init__(
        self,
        name: str,
        module: str,
        door: str,
        group: str,
        help: str,
        *,
        synopsis: str = "",
        options: tuple[str, ...] = (),
        complete: tuple[str, ...] = (),
        hidden: bool = False,
    ) -> None:
        self.name = name
        self.module = module
        self.door = door
        self.group = group
        self.help = help
        self.synopsis = synopsis
        self.options = options
        self.complete = complete
        self.hidden = hidden

    def usage(self, text: str = "") -> str:
        """``VERB --help`` of a lean verb: synopsis, TEXT (else the one-line help), options."""
        first, *more = self.synopsis.split("\n")
        lines = [f"usage: {first}", *(f"       {line}" for line in more)]
        out = "\n".join(lines) + "\n\n" + (text or self.help + "\n")
        listed = options_help(self.options)
        return out + ("\nOptions:\n" + listed if listed else "")


BUILD, IMAGES, MACHINES, OTHER = "Archives and builds", "Images", "Machines", "Other"
_MACHINE_SIGNAL = "Send a signal to a running machine's processes."
_BOOT_OPTS = NSPAWN
_LISTING = ("help", "all", "json", *(k for k in GLOBAL if k != "help"))

VERBS: tuple[Verb, ...] = (
    # -- archives and builds (typer)
    Verb("info", "archive", "typer", BUILD,
         "The verified Release of a suite; with packages, their stanzas (apt-cache show)."),
    Verb("resolve", "resolve", "typer", BUILD,
         "The install plan for a suite: versions, sizes, order and why each is in."),
    Verb("bootstrap", "bootstrap", "typer", BUILD,
         "Bootstrap a suite into the store as an image (or a directory, or a tarball)."),
    Verb("cache", "cache", "typer", BUILD,
         "Inspect or prune the download cache and the configured trees (--cache-dir).",
         complete=("choice:list,clean",)),
    Verb("keyring", "keyring", "typer", BUILD,
         "Archive keyrings: obtain one with its trust anchored.", complete=("choice:fetch",)),
    # -- images (machinectl's image verbs)
    Verb("list-images", "listing", "lean", IMAGES, "List the images in the store.",
         synopsis="rootstrap list-images [--all] [--json]", options=_LISTING),
    Verb("show-image", "images", "typer", IMAGES,
         "Show an image's properties as KEY=VALUE lines.", complete=("image",)),
    Verb("image-status", "images", "typer", IMAGES,
         "Show an image for a human: type, path, usage, times, OS, origin, state.",
         complete=("image",)),
    Verb("clone", "images", "typer", IMAGES,
         "Clone an image (btrfs snapshot, reflink copy, or a faithful copy).",
         complete=("image",)),
    Verb("rename", "images", "typer", IMAGES, "Rename an image.", complete=("image",)),
    Verb("remove", "images", "typer", IMAGES,
         "Remove images (never a running one).", complete=("image...",)),
    Verb("read-only", "images", "typer", IMAGES,
         "Mark an image read-only (or writable again).", complete=("image", "choice:yes,no")),
    Verb("import-tar", "images", "typer", IMAGES,
         "Import a tar archive (plain, .gz, .xz, .zst) as an image."),
    Verb("export-tar", "images", "typer", IMAGES,
         "Export an image as a tar archive.", complete=("image",)),
    Verb("import-fs", "images", "typer", IMAGES, "Copy a directory tree into the store."),
    Verb("clean", "images", "typer", IMAGES,
         "Remove the hidden leftovers (.#NAME.xxxx) of interrupted commands."),
    # -- machines (systemd-nspawn's and machinectl's verbs)
    Verb("run", "lean", "lean", MACHINES,
         "Run a command in an image in new namespaces (systemd-nspawn's options).",
         synopsis="rootstrap run (NAME | -D DIR) [OPTIONS] [--] CMD [ARG...]",
         options=NSPAWN, complete=("image",)),
    Verb("boot", "lean", "lean", MACHINES,
         "Boot an image: its init as PID 1, the console on this terminal.",
         synopsis="rootstrap boot (NAME | -D DIR) [OPTIONS] [-- INIT-ARG...]",
         options=_BOOT_OPTS, complete=("image",)),
    Verb("show", "show", "lean", MACHINES,
         "The effective settings of a machine (.nspawn files and options).",
         synopsis="rootstrap show (NAME | -D DIR) [run/boot options] [--json] [-- CMD...]",
         options=(*NSPAWN, "json"), complete=("image",)),
    Verb("start", "service", "lean", MACHINES,
         "Boot machines in the background, the console to a log.",
         synopsis="rootstrap start NAME... [BOOT-OPTIONS] [--timeout SECS] [--no-block]",
         options=(*NSPAWN, "timeout", "no_block"), complete=("image...",)),
    Verb("stop", "service", "lean", MACHINES,
         "Power machines off and wait until they are gone.",
         synopsis="rootstrap stop NAME... [--timeout SECS] [--no-block]",
         options=("help", "timeout", "no_block"), complete=("machine...",)),
    Verb("list", "running", "lean", MACHINES, "List the running machines.",
         synopsis="rootstrap list [--json]", options=("help", "json")),
    Verb("status", "running", "lean", MACHINES,
         "A machine's state, leader, OS, addresses and last console lines.",
         synopsis="rootstrap status NAME... [-n LINES] [--json]",
         options=("help", "json", "lines"), complete=("machine...",)),
    Verb("shell", "running", "lean", MACHINES,
         "Run a shell or a command in a running machine.",
         synopsis="rootstrap shell [USER@]NAME [CMD [ARG...]]", options=("help",),
         complete=("machine",)),
    Verb("login", "running", "lean", MACHINES,
         "Attach to a background machine's console (Ctrl-] x3 detaches).",
         synopsis="rootstrap login NAME", options=("help",), complete=("machine",)),
    Verb("poweroff", "running", "lean", MACHINES, "Power running machines off cleanly.",
         synopsis="rootstrap poweroff NAME...", options=("help",), complete=("machine...",)),
    Verb("reboot", "running", "lean", MACHINES, "Reboot running machines.",
         synopsis="rootstrap reboot NAME...", options=("help",), complete=("machine...",)),
    Verb("terminate", "running", "lean", MACHINES,
         "Kill every process of running machines at once.",
         synopsis="rootstrap terminate NAME...", options=("help",), complete=("machine...",)),
    Verb("kill", "running", "lean", MACHINES, _MACHINE_SIGNAL,
         synopsis="rootstrap kill NAME... [--signal SIG] [--kill-whom leader|all]",
         options=("help", "signal", "kill_whom"), complete=("machine...",)),
    Verb("enable", "units", "lean", MACHINES,
         "Start machines at host boot (a rootstrap@NAME.service unit).",
         synopsis="rootstrap enable [--now] [--root DIR] NAME...",
         options=("help", "now", "root"), complete=("image...",)),
    Verb("disable", "units", "lean", MACHINES, "No longer start machines at host boot.",
         synopsis="rootstrap disable [--now] [--root DIR] NAME...",
         options=("help", "now", "root"), complete=("image...",)),
    # -- the command line itself
    Verb("completion", "complete", "lean", OTHER,
         "Print a shell completion script: bash, zsh or fish.",
         synopsis="rootstrap completion bash|zsh|fish", options=("help",),
         complete=("choice:bash,zsh,fish",)),
    Verb("__complete", "complete", "lean", OTHER,
         "The candidates for the last of WORDS (what the completion scripts call).",
         synopsis="rootstrap __complete WORD... CURRENT", hidden=True),
)  # fmt: skip

BY_NAME = {verb.name: verb for verb in VERBS}
GROUPS = (BUILD, IMAGES, MACHINES, OTHER)

DESCRIPTION = (
    "Bootstrap Debian and Ubuntu root filesystems, keep them as images, run and boot them."
)


def top_help() -> str:
    """``rootstrap --help``: the global options and every verb with its one-line help."""
    out = [
        "usage: rootstrap [OPTIONS] VERB [ARGS...]",
        "",
        DESCRIPTION,
        "",
        "Options:",
        options_help(GLOBAL).rstrip("\n"),
        # Aligned with the rows above (options_help pads the names to the longest + 1).
        "  -h, --help".ljust(len("  --cache-dir DIR  ")) + "this help; a verb's: VERB --help",
    ]
    width = max(len(v.name) for v in VERBS if not v.hidden) + 2
    for group in GROUPS:
        out += ["", f"{group}:"]
        listed = [v for v in VERBS if v.group == group and not v.hidden]
        out += [f"  {v.name.ljust(width)}{v.help}" for v in listed]
    return "\n".join(out) + "\n"
