"""The one option table of the lean verbs, and the one parser that reads it.

Every option the typer-free verbs take (cli/verbs.py says which verbs those are) is one
``Opt`` row in ``TABLE``: its names, the key its value is stored under, its kind, metavar and
help. The same rows give the global options (``--store``, ``--cache-dir``, ``-q``, ``-v``,
``--debug``), the nspawn options of ``run``/``boot``/``start``/``show`` and the few options of
the machinectl verbs; ``parse`` reads a verb's words against the rows the verb names,
``options_help`` prints them for ``VERB --help``, and cli/complete.py completes them.

Start-up matters here (``run /bin/true`` is measured against systemd-nspawn): standard library
only, and not even typing at run time.
"""

from __future__ import annotations

from rootstrap.errors import UsageError
from rootstrap.paths import DEFAULT_CACHE, DEFAULT_STORE, cache_dir, store_dir

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Collection


class Opt:
    """One option: NAMES (``-D``, ``--directory``), the KEY its value is stored under, its
    KIND (``flag``: no value; ``value``: one, the last given wins; ``list``: repeatable;
    ``json``: a flag that also takes machinectl's ``=pretty|short|off``), the METAVAR shown
    in help, the HELP line (``\\n`` continues it), what is missing when the value is (WHAT),
    and the CHOICES a shell completes for it."""

    __slots__ = ("choices", "help", "key", "kind", "metavar", "names", "what")

    def __init__(
        self,
        names: tuple[str, ...],
        key: str,
        kind: str,
        help: str,
        metavar: str = "",
        *,
        what: str = "a value",
        choices: tuple[str, ...] = (),
    ) -> None:
        self.names = names
        self.key = key
        self.kind = kind
        self.help = help
        self.metavar = metavar
        self.what = what
        self.choices = choices


_YES_NO = ("yes", "no")

TABLE: tuple[Opt, ...] = (
    # -- global: before the verb (cli/__init__ parse_globals)
    Opt(
        ("--store",),
        "store",
        "value",
        f"image store (default {DEFAULT_STORE})\n[env ROOTSTRAP_STORE]",
        "DIR",
    ),
    Opt(
        ("--cache-dir",),
        "cache_dir",
        "value",
        f"download cache (default {DEFAULT_CACHE})\n[env ROOTSTRAP_CACHE]",
        "DIR",
    ),
    Opt(("-q", "--quiet"), "quiet", "flag", "only errors"),
    Opt(("-v", "--verbose"), "verbose", "flag", "more detail"),
    Opt(("--debug",), "debug", "flag", "tracebacks and debug logs"),
    Opt(("-h", "--help"), "help", "flag", "show this help"),
    # -- nspawn's: run, boot, start, show (names and meaning as systemd-nspawn's)
    Opt(
        ("-D", "--directory"),
        "directory",
        "value",
        "the root directory instead of an image NAME",
        "DIR",
    ),
    Opt(("--bind",), "bind", "list", "bind a host path (OPTS: rbind|norbind)", "SRC[:DST[:OPTS]]"),
    Opt(("--bind-ro",), "bind_ro", "list", "the same, read-only", "SRC[:DST[:OPTS]]"),
    Opt(("--tmpfs",), "tmpfs", "list", "a tmpfs at PATH", "PATH[:OPTS]"),
    Opt(("-E", "--setenv"), "setenv", "list", "set an environment variable", "NAME[=VALUE]"),
    Opt(("--chdir",), "chdir", "value", "working directory inside", "DIR"),
    Opt(("-u", "--user"), "user", "value", "run as NAME (from the image's /etc/passwd)", "NAME"),
    Opt(("--hostname",), "hostname", "value", "hostname (default: the machine name)", "NAME"),
    Opt(
        ("-M", "--machine"), "machine", "value", "machine name (default: the image's name)", "NAME"
    ),
    Opt(("--read-only",), "read_only", "flag", "mount the image read-only"),
    Opt(("-x", "--ephemeral"), "ephemeral", "flag", "throw-away overlay, the image is not changed"),
    Opt(("--private-network",), "private_network", "flag", "only a loopback interface"),
    Opt(
        ("-n", "--network-veth"),
        "network_veth",
        "flag",
        "boot: a private network with a veth pair: ve-NAME on the host,\n"
        "host0 inside, both addressed (a /30 of 10.231.0.0/16)",
    ),
    Opt(
        ("--network-bridge",),
        "network_bridge",
        "value",
        "boot: the same, its host end vb-NAME on bridge BR (no addresses)",
        "BR",
    ),
    Opt(
        ("--capability",),
        "capability",
        "list",
        "add to the bounding set (CAP_X,CAP_Y or all)",
        "CAPS",
    ),
    Opt(("--drop-capability",), "drop_capability", "list", "remove from the bounding set", "CAPS"),
    Opt(
        ("--no-new-privileges",),
        "no_new_privileges",
        "value",
        "no_new_privs (default yes for run, no for boot)",
        "BOOL",
        choices=_YES_NO,
    ),
    Opt(
        ("--system-call-filter",),
        "system_call_filter",
        "list",
        "allow (NAME, @group) or deny (~NAME) system calls",
        "LIST",
    ),
    Opt(
        ("--private-users",),
        "private_users",
        "value",
        "no|yes|pick|identity|UID[:COUNT]: a user namespace",
        "MODE",
        choices=("no", "yes", "pick", "identity"),
    ),
    # runner/container.py CONSOLE_MODES but "service" (start's own; tests/unit checks this)
    Opt(
        ("--console",),
        "console",
        "value",
        "interactive|read-only|passive|pipe",
        "MODE",
        choices=("interactive", "read-only", "passive", "pipe"),
    ),
    Opt(("-P", "--pipe"), "pipe", "flag", "the same as --console=pipe"),
    Opt(
        ("-a", "--as-pid2"),
        "as_pid2",
        "flag",
        "run: the command as PID 2 under a reaper (always so; nspawn's option)",
    ),
    Opt(
        ("--settings",),
        "settings",
        "value",
        "yes|no|trusted|override: NAME.nspawn settings files, as\n"
        'systemd-nspawn reads them (see the README, "Settings files")',
        "MODE",
        choices=("yes", "no", "trusted", "override"),
    ),
    # -- the machinectl-style verbs'
    Opt(("--json",), "json", "json", "machine-readable output"),
    Opt(("-a", "--all"), "all", "flag", "show hidden images too"),
    Opt(("-n", "--lines"), "lines", "value", "console lines to show (default 10)", "N"),
    Opt(("-s", "--signal"), "signal", "value", "the signal to send (default SIGTERM)", "SIG"),
    Opt(
        ("--kill-whom",),
        "kill_whom",
        "value",
        "every process of the machine, or its init",
        "all|leader",
        choices=("all", "leader"),
    ),
    Opt(
        ("--timeout",),
        "timeout",
        "value",
        "seconds to wait (default 90): start until each machine is up,\n"
        "stop until it is gone (then it is killed)",
        "SECS",
    ),
    Opt(
        ("--no-block",), "no_block", "flag", "do not wait: start until registered, stop not at all"
    ),
    Opt(("--now",), "now", "flag", "also start (enable) or stop (disable) the machines now"),
    Opt(
        ("--root",),
        "root",
        "value",
        "install into DIR/etc/systemd/system and link offline (systemctl --root)",
        "DIR",
        what="a directory",
    ),
)

GLOBAL = ("store", "cache_dir", "quiet", "verbose", "debug", "help")
# run, boot, start and show: systemd-nspawn's options (cli/lean.py reads them into
# rootstrap.machines.settings.Options, whose attributes carry these keys).
NSPAWN = (
    "help",
    "directory",
    "bind",
    "bind_ro",
    "tmpfs",
    "setenv",
    "chdir",
    "user",
    "hostname",
    "machine",
    "read_only",
    "ephemeral",
    "private_network",
    "network_veth",
    "network_bridge",
    "capability",
    "drop_capability",
    "no_new_privileges",
    "system_call_filter",
    "private_users",
    "console",
    "pipe",
    "as_pid2",
    "settings",
)


def table(keys: Collection[str]) -> dict[str, Opt]:
    """Option name -> row, for the rows whose key is in KEYS (``-n`` is ``--network-veth``
    for run, ``--lines`` for status: names are unique within a verb, not across verbs)."""
    return {name: opt for opt in TABLE if opt.key in keys for name in opt.names}


class Parsed:
    """A verb's words read against its rows: VALUES by key (flag: True; value: str; list:
    list of str), the BARE words (image or machine names), REST (the command: the words
    after ``--``, or from the word STOP said starts it), HELP when -h/--help was given."""

    __slots__ = ("bare", "dashdash", "help", "rest", "values")

    def __init__(self) -> None:
        self.values: dict[str, object] = {}
        self.bare: list[str] = []
        self.rest: list[str] = []
        self.dashdash = False
        self.help = False

    def value(self, key: str, default: str | None = None) -> str | None:
        found = self.values.get(key, default)
        return found if found is None or isinstance(found, str) else default

    def flag(self, key: str) -> bool:
        return bool(self.values.get(key))

    def names(self) -> list[str]:
        """The bare words and, after ``--``, the rest (verbs that take only names)."""
        return self.bare + self.rest


def parse(
    verb: str,
    args: list[str],
    keys: Collection[str],
    *,
    stop: Callable[[Parsed], bool] | None = None,
    label: str = "option",
) -> Parsed:
    """Read ARGS of VERB against the rows of KEYS: options (``--key value``, ``--key=value``,
    anywhere before ``--`` and before the command) and bare words. STOP, asked at each bare
    word, says whether it starts the command (``run IMAGE CMD...``: the second one). -h or
    --help anywhere before the command wins over any error (Parsed.help); otherwise the
    first bad option is a UsageError (exit 2) naming it. Cost: one pass over the words."""
    rows = table(keys)
    hint = f"see 'rootstrap {verb} --help'" if verb else "see 'rootstrap --help'"
    p = Parsed()
    error: UsageError | None = None
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            p.rest, p.dashdash = args[i + 1 :], True
            break
        if not arg.startswith("-") or arg == "-":
            if stop is not None and stop(p):
                p.rest = args[i:]
                break
            p.bare.append(arg)
            i += 1
            continue
        key, eq, value = arg.partition("=")
        opt = rows.get(key)
        if opt is None:
            error = error or UsageError(f"unknown {label} {key}", hint=hint)
        elif opt.kind == "flag":
            if eq:
                error = error or UsageError(f"{key} takes no value", subject=arg)
            p.values[opt.key] = True
        elif opt.kind == "json":
            p.values[opt.key] = value.lower() != "off"
        else:
            if not eq:
                i += 1
                if i >= len(args):
                    error = error or UsageError(f"{key} needs {opt.what}", hint=hint)
                    break
                value = args[i]
            if opt.kind == "list":
                found = p.values.setdefault(opt.key, [])
                assert isinstance(found, list)
                found.append(value)
            else:
                p.values[opt.key] = value
        i += 1
    if p.values.pop("help", False):
        p.help = True
    elif error is not None:
        raise error
    return p


def options_help(keys: Collection[str]) -> str:
    """The ``Options:`` lines of KEYS' rows, in table order (help itself left out)."""
    rows: list[tuple[str, str]] = []
    for opt in TABLE:
        if opt.key in keys and opt.key != "help":
            left = ", ".join(opt.names) + (f" {opt.metavar}" if opt.metavar else "")
            rows.append((left, opt.help))
    if not rows:
        return ""
    width = min(max(len(left) for left, _ in rows), 26) + 1
    out = []
    for left, text in rows:
        first, *more = text.split("\n")
        out.append(f"  {left.ljust(width)} {first}" if len(left) <= width else f"  {left} {first}")
        out += [f"  {'':{width}} {line}" for line in more]
    return "\n".join(out) + "\n"


class Globals:
    """The global options of one invocation: the store and download cache (option, else
    environment, else default), verbosity (-1 quiet, 0 normal, 1 verbose) and --debug."""

    __slots__ = ("cache_dir", "debug", "store", "verbosity")

    def __init__(self) -> None:
        self.store = store_dir()
        self.cache_dir = cache_dir()
        self.verbosity = 0
        self.debug = False

    def take(self, p: Parsed) -> None:
        """Apply what P holds of the global options (given before the verb, or to a verb
        that takes them too)."""
        self.store = p.value("store") or self.store
        self.cache_dir = p.value("cache_dir") or self.cache_dir
        self.debug = self.debug or p.flag("debug")
        if p.flag("quiet"):
            self.verbosity = -1
        elif p.flag("verbose") or self.debug:
            self.verbosity = max(self.verbosity, 1)


def parse_globals(argv: list[str], g: Globals) -> Parsed:
    """Read the global options before the verb into G: the Parsed's rest is the verb and its
    words (empty when none was given), its help set when -h/--help came before the verb.
    The one parser of the global options, for both doors."""
    p = parse("", argv, GLOBAL, stop=lambda _: True, label="global option")
    g.take(p)
    return p
