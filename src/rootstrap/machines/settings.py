"""Per-machine settings: systemd's own ``.nspawn`` files, read the way systemd-nspawn reads them.

systemd.nspawn(5) and systemd-nspawn(1) ``--settings=`` are the reference; the behaviour below
was checked against systemd-nspawn 252 on this machine (tests/ns/test_settings_nspawn.py).

- Lookup (``find``): NAME.nspawn in /etc/systemd/nspawn, then /run/systemd/nspawn (trusted),
  then beside the image (the store, or the parent of ``-D DIR``: only partly trusted). The
  first found is the only one read.
- Syntax (systemd.syntax(7)): ``[Section]`` headers, ``KEY=VALUE`` lines, ``#``/``;`` comments,
  a trailing backslash continues a line; an empty value resets the key. An unknown section or
  key, or one rootstrap does not support, is a warning naming FILE:LINE; a line that cannot be
  parsed or a bad value is a UsageError whose subject is FILE:LINE (where nspawn logs and
  ignores the line, we refuse to start a machine with settings we could not read).
- Trust: from a file beside the image, the privileged settings (Capability=, PrivateUsers=,
  Bind=, BindReadOnly=, TemporaryFileSystem=, the [Network] ones, Port=, an allow-list
  SystemCallFilter=) are ignored with a warning, unless ``--settings=trusted``.
- Merge (``apply``): per setting group, as nspawn's ``merge_settings()``: a group given on the
  command line wins over the file entirely (one ``--setenv`` drops all of the file's
  Environment=; one ``--bind``, ``--bind-ro`` or ``--tmpfs`` drops all of its mounts);
  ``--settings=override`` turns that round.

Standard library, rootstrap.errors and rootstrap.rules only at import (rootstrap.runner.caps is
loaded to check a file's Capability= names, when it has some): this module is on
``rootstrap run``'s start-up path. Measured here: ~0.4 ms to import, ~0.08 ms for ``settle`` with
no settings file (three stat(2) calls).
"""

from __future__ import annotations

import os

from rootstrap.errors import UsageError
from rootstrap.rules import check_machine_name, parse_boolean, parse_private_users

SEARCH = ("/etc/systemd/nspawn", "/run/systemd/nspawn")
MODES = ("yes", "no", "trusted", "override")


class Options:
    """The runner options of ``run``/``boot``/``show``, from the command line and a settings
    file (attributes named after nspawn's long options).

    ``given`` holds the setting groups (``GROUP`` values) the command line set: ``apply``
    leaves those alone. ``boot``: None until decided (``run``), True for ``boot``.
    ``parameters``: the command (run) or the init's arguments (boot). ``notes``: warnings
    ("FILE:LINE: text") for the caller to print."""

    def __init__(self) -> None:
        self.directory: str | None = None
        self.bind: list[str] = []
        self.bind_ro: list[str] = []
        self.tmpfs: list[str] = []
        self.setenv: list[str] = []
        self.chdir = "/"
        self.user: str | None = None
        self.hostname: str | None = None
        self.machine: str | None = None
        self.read_only = False
        self.ephemeral = False
        self.private_network = False
        self.network_veth = False
        self.network_bridge: str | None = None
        self.capability: list[str] = []
        self.drop_capability: list[str] = []
        self.no_new_privileges: str | None = None
        self.system_call_filter: list[str] = []
        self.private_users = "no"
        self.console: str | None = None
        self.pipe = False
        self.as_pid2 = False
        self.settings = "yes"
        self.given: set[str] = set()
        self.boot: bool | None = None
        self.parameters: list[str] = []
        self.port: list[str] = []
        self.settings_file: str | None = None
        self.settings_trusted = False
        self.notes: list[str] = []
        # Where the file's network settings came from, for run's "boot only" warning.
        self.veth_from: str | None = None


# Option attribute -> the setting group nspawn masks when the option is given (its
# SETTING_* bits: one --bind masks all custom mounts, --capability and --drop-capability
# share one bit, the network options one).
GROUP = {
    "bind": "mounts",
    "bind_ro": "mounts",
    "tmpfs": "mounts",
    "setenv": "environment",
    "chdir": "working_directory",
    "user": "user",
    "hostname": "hostname",
    "read_only": "read_only",
    "ephemeral": "ephemeral",
    "private_network": "network",
    "network_veth": "network",
    "network_bridge": "network",
    "capability": "capability",
    "drop_capability": "capability",
    "no_new_privileges": "no_new_privileges",
    "system_call_filter": "syscall_filter",
    "private_users": "private_users",
}


class Settings:
    """One parsed .nspawn file. None (or an empty list) means the file does not set it.

    ``lines`` maps a setting group to the line that first set it, scalars to the line that
    last did: what the warnings name."""

    def __init__(self, path: str, trusted: bool) -> None:
        self.path = path
        self.trusted = trusted
        self.boot: bool | None = None
        self.parameters: list[str] | None = None
        self.environment: list[str] | None = None
        self.user: str | None = None
        self.working_directory: str | None = None
        self.hostname: str | None = None
        self.syscall_filter: list[str] = []
        self.capability: list[str] = []
        self.drop_capability: list[str] = []
        self.no_new_privileges: bool | None = None
        self.private_users: str | None = None
        self.ephemeral: bool | None = None
        self.read_only: bool | None = None
        self.mounts: list[tuple[str, str]] = []  # ("bind" | "bind_ro" | "tmpfs", value)
        self.private_network: bool | None = None
        self.virtual_ethernet: bool | None = None
        self.bridge: str | None = None
        self.port: list[str] = []
        self.lines: dict[str, int] = {}
        self.warnings: list[str] = []

    def where(self, group: str) -> str:
        """FILE:LINE of the line that set GROUP (FILE alone when unknown)."""
        line = self.lines.get(group)
        return f"{self.path}:{line}" if line else self.path

    def network_configured(self) -> bool:
        return (
            self.private_network is not None
            or self.virtual_ethernet is not None
            or self.bridge is not None
        )


def find(
    machine: str, image: str | None, search: tuple[str, ...] = SEARCH
) -> tuple[str, bool] | None:
    """(path, trusted) of MACHINE's settings file, or None. IMAGE: the image directory, whose
    parent is searched last (untrusted); None or "/" skips it. Cost: up to three stat(2)."""
    name = machine + ".nspawn"
    for directory in search:
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return path, True
    if image and os.path.realpath(image) != "/":
        # Beside the image as named (a store entry that is a symlink is not followed), as
        # nspawn's file_in_same_dir() of the absolute, simplified path.
        path = os.path.join(os.path.dirname(os.path.abspath(image)), name)
        if os.path.exists(path):
            return path, False
    return None


def load(path: str, trusted: bool) -> Settings:
    """Read and parse the settings file PATH; UsageError naming it if it cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError:
        raise UsageError("not a UTF-8 text file", subject=path) from None
    except OSError as exc:
        raise UsageError(f"cannot read the settings file: {exc.strerror}", subject=path) from exc
    return parse(text, path, trusted)


def split_words(value: str) -> list[str]:
    """Split VALUE into words as systemd's strv settings do (extract_first_word with
    EXTRACT_UNQUOTE|EXTRACT_RETAIN_ESCAPE): whitespace separates, single or double quotes
    group and are removed, a backslash is an ordinary character. ValueError for an
    unterminated quote."""
    words: list[str] = []
    word: list[str] = []
    in_word = False
    quote = ""
    for ch in value:
        if quote:
            if ch == quote:
                quote = ""
            else:
                word.append(ch)
        elif ch in "'\"":
            quote = ch
            in_word = True
        elif ch.isspace():
            if in_word:
                words.append("".join(word))
                word, in_word = [], False
        else:
            word.append(ch)
            in_word = True
    if quote:
        raise ValueError("unterminated quote")
    if in_word:
        words.append("".join(word))
    return words


def parse_bind(value: str, readonly: bool) -> tuple[str, str, bool, bool]:
    """nspawn's ``--bind``/``Bind=`` ``SRC[:DST[:OPTS]]`` to (source, target, readonly,
    recursive). UsageError (subject VALUE) for what the runner cannot do."""
    parts = value.split(":")
    if len(parts) > 3 or not parts[0]:
        raise UsageError("expected SRC[:DST[:OPTS]]", subject=value)
    source = parts[0]
    if source.startswith("+") or not source.startswith("/"):
        raise UsageError(
            "the source must be an absolute host path", subject=value, hint="--bind /SRC:/DST"
        )
    target = parts[1] if len(parts) > 1 and parts[1] else source
    if not target.startswith("/"):
        raise UsageError("the target must be an absolute path", subject=value)
    recursive = True
    for opt in parts[2].split(",") if len(parts) > 2 else []:
        if opt not in ("", "rbind", "norbind"):
            raise UsageError(
                f"unsupported bind option {opt!r}", subject=value, hint="rbind|norbind"
            )
        recursive = opt != "norbind" if opt else recursive
    return source, target, readonly, recursive


def _check_port(value: str) -> None:
    """nspawn's ``--port=[PROTOCOL:]HOSTPORT[:CONTAINERPORT]`` (PROTOCOL tcp or udp)."""
    parts = value.split(":")
    if parts[0] in ("tcp", "udp"):
        parts = parts[1:]
    if not 1 <= len(parts) <= 2 or not all(p.isdigit() and 0 < int(p) < 65536 for p in parts):
        raise ValueError("expected [tcp|udp:]HOSTPORT[:CONTAINERPORT]")


def _valid_ifname(value: str) -> bool:
    # ifname_valid(): at most 15 bytes (IFNAMSIZ - 1), no '/', ':' or whitespace.
    return (
        0 < len(value.encode()) <= 15
        and value not in (".", "..")
        and not any(c in "/:" or c.isspace() for c in value)
    )


# Keys systemd-nspawn knows that rootstrap does not implement: a warning, not an error.
_UNSUPPORTED = {
    "Exec": (
        "ProcessTwo AmbientCapability KillSignal Personality MachineID PivotRoot NotifyReady "
        "LimitCPU LimitFSIZE LimitDATA LimitSTACK LimitCORE LimitRSS LimitNOFILE LimitAS "
        "LimitNPROC LimitMEMLOCK LimitLOCKS LimitSIGPENDING LimitMSGQUEUE LimitNICE "
        "LimitRTPRIO LimitRTTIME OOMScoreAdjust CPUAffinity ResolvConf LinkJournal Timezone "
        "SuppressSync"
    ).split(),
    "Files": (
        "Volatile Inaccessible Overlay OverlayReadOnly PrivateUsersChown "
        "PrivateUsersOwnership BindUser"
    ).split(),
    "Network": "Interface MACVLAN IPVLAN VirtualEthernetExtra Zone".split(),
}
_SUPPORTED = {
    "Exec": (
        "Boot Parameters Environment User WorkingDirectory Hostname SystemCallFilter "
        "Capability DropCapability NoNewPrivileges PrivateUsers Ephemeral"
    ).split(),
    "Files": "ReadOnly Bind BindReadOnly TemporaryFileSystem".split(),
    "Network": "Private VirtualEthernet Bridge Port".split(),
}


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, text) per logical line: a trailing backslash joins the next line
    (systemd.syntax(7)), comment lines inside a continuation are skipped."""
    out: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if pending is not None:
            if line.startswith(("#", ";")):
                continue
            start, before = pending
            line = before + " " + line
        else:
            start = number
        if line.endswith("\\"):
            pending = (start, line[:-1].rstrip())
            continue
        pending = None
        out.append((start, line))
    if pending is not None:
        out.append(pending)
    return out


def parse(text: str, path: str, trusted: bool) -> Settings:
    """Parse the text of settings file PATH. Warnings (unknown or unsupported section or key)
    go to ``Settings.warnings`` as "PATH:LINE: ..."; a malformed line or a bad value raises
    UsageError with subject "PATH:LINE". Cost: linear in the text, no I/O."""
    s = Settings(path, trusted)
    section: str | None = None
    for number, line in _logical_lines(text):
        at = f"{path}:{number}"
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            if not line.endswith("]") or len(line) < 3:
                raise UsageError(f"malformed section header {line!r}", subject=at)
            section = line[1:-1]
            if section not in _SUPPORTED:
                s.warnings.append(f"{at}: unknown section [{section}], ignoring it")
            continue
        key, eq, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not key:
            raise UsageError(
                f"expected [SECTION], KEY=VALUE or a comment, not {line!r}",
                subject=at,
                hint="see systemd.nspawn(5)",
            )
        if section is None:
            s.warnings.append(f"{at}: {key}= outside of any section, ignoring it")
            continue
        if section not in _SUPPORTED:
            continue  # warned once at the header
        if key in _UNSUPPORTED[section]:
            s.warnings.append(f"{at}: {key}= is not supported by rootstrap, ignoring it")
            continue
        if key not in _SUPPORTED[section]:
            s.warnings.append(f"{at}: unknown key {key}= in [{section}], ignoring it")
            continue
        try:
            _assign(s, key, value, number)
        except ValueError as exc:
            raise UsageError(f"{key}=: {exc}", subject=at, hint="see systemd.nspawn(5)") from None
        except UsageError as exc:
            raise UsageError(f"{key}={value}: {exc.message}", subject=at, hint=exc.hint) from None
    return s


def _assign(s: Settings, key: str, value: str, line: int) -> None:
    """Store KEY=VALUE in S (an empty VALUE resets the key); ValueError for a bad value."""
    empty = not value
    if key in ("Boot", "Parameters"):
        s.lines["start"] = line
        if key == "Boot":
            s.boot = None if empty else parse_boolean(value)
        else:
            s.parameters = None if empty else split_words(value)
    elif key == "Environment":
        s.lines["environment"] = line
        if empty:
            s.environment = None
            return
        words = split_words(value)
        for word in words:
            name, eq, _ = word.partition("=")
            if not eq or not name or "\0" in word:
                raise ValueError(f"expected NAME=VALUE, not {word!r}")
        s.environment = (s.environment or []) + words
    elif key == "User":
        s.lines["user"] = line
        if not empty and any(c.isspace() or c in "/:" for c in value):
            raise ValueError(f"invalid user name {value!r}")
        s.user = value or None
    elif key == "WorkingDirectory":
        s.lines["working_directory"] = line
        if not empty and not value.startswith("/"):
            raise ValueError("expected an absolute path")
        s.working_directory = value or None
    elif key == "Hostname":
        s.lines["hostname"] = line
        if not empty:
            check_machine_name(value, "hostname")  # nspawn: hostname_is_valid(value, 0)
        s.hostname = value or None
    elif key == "SystemCallFilter":
        s.lines.setdefault("syscall_filter", line)
        s.syscall_filter = [] if empty else [*s.syscall_filter, value]
    elif key in ("Capability", "DropCapability"):
        s.lines.setdefault("capability" if key == "Capability" else "drop_capability", line)
        names = split_words(value)
        if names:
            from rootstrap.runner import caps  # only for files that name capabilities

            caps.parse(",".join(names))  # ValueError names the unknown one
        if key == "Capability":
            s.capability = [] if empty else [*s.capability, *names]
        else:
            s.drop_capability = [] if empty else [*s.drop_capability, *names]
    elif key == "NoNewPrivileges":
        s.lines["no_new_privileges"] = line
        s.no_new_privileges = None if empty else parse_boolean(value)
    elif key == "PrivateUsers":
        s.lines["private_users"] = line
        if not empty:
            parse_private_users(value)
        s.private_users = value or None
    elif key == "Ephemeral":
        s.lines["ephemeral"] = line
        s.ephemeral = None if empty else parse_boolean(value)
    elif key == "ReadOnly":
        s.lines["read_only"] = line
        s.read_only = None if empty else parse_boolean(value)
    elif key in ("Bind", "BindReadOnly", "TemporaryFileSystem"):
        s.lines.setdefault("mounts", line)
        if empty:
            s.mounts = []
        elif key == "TemporaryFileSystem":
            if not value.startswith("/"):
                raise ValueError("expected an absolute PATH[:OPTIONS]")
            s.mounts.append(("tmpfs", value))
        else:
            parse_bind(value, key == "BindReadOnly")
            s.mounts.append(("bind" if key == "Bind" else "bind_ro", value))
    elif key == "Port":
        s.lines.setdefault("port", line)
        if empty:
            s.port = []
        else:
            _check_port(value)
            s.port.append(value)
    else:  # [Network] Private, VirtualEthernet, Bridge
        s.lines.setdefault("network", line)
        if key == "Bridge":
            if not empty and not _valid_ifname(value):
                raise ValueError(f"invalid interface name {value!r}")
            s.bridge = value or None
        elif key == "Private":
            s.private_network = None if empty else parse_boolean(value)
        else:
            s.virtual_ethernet = None if empty else parse_boolean(value)


def settle(
    opts: Options, machine: str, image: str | None, search: tuple[str, ...] = SEARCH
) -> None:
    """Find, read and apply MACHINE's settings file to OPTS as ``--settings=`` (opts.settings)
    says; records ``settings_file``/``settings_trusted`` and the warnings in ``notes``.
    UsageError for a bad mode or a malformed file. Cost with no file: three stat(2)."""
    mode = opts.settings.lower()
    if mode not in MODES:
        try:
            mode = "yes" if parse_boolean(mode) else "no"
        except UsageError:
            raise UsageError(
                "--settings takes yes, no, trusted or override", subject=opts.settings
            ) from None
    if mode == "no":
        return
    # The file name is MACHINE.nspawn: a path here would read a file from elsewhere as
    # trusted (nspawn refuses such -M names outright).
    check_machine_name(machine)
    found = find(machine, image, search)
    if found is None:
        return
    path, trusted = found
    s = load(path, trusted or mode == "trusted")
    opts.settings_file = path
    opts.settings_trusted = s.trusted
    opts.notes.extend(s.warnings)
    apply(opts, s, override=mode == "override")


def apply(opts: Options, s: Settings, *, override: bool = False) -> None:
    """Merge S into OPTS as systemd-nspawn's merge_settings() does: each setting group the
    command line gave (opts.given) keeps its command-line value, unless OVERRIDE; privileged
    settings of an untrusted file are dropped with a note. No I/O."""

    def free(group: str) -> bool:
        return override or group not in opts.given

    def untrusted(group: str, what: str) -> bool:
        if s.trusted:
            return False
        opts.notes.append(
            f"{s.where(group)}: ignoring {what}: the file is not trusted "
            "(it lies beside the image; --settings=trusted, or move it to /etc/systemd/nspawn/)"
        )
        return True

    if free("start"):
        if s.boot:
            if opts.boot is None:
                opts.boot = True
            opts.parameters = list(s.parameters or [])
        elif s.parameters is not None and not opts.boot:
            # Boot=no or unset: Parameters= is the command (the man page's reading; nspawn
            # 252 itself ignores Parameters= unless the file also says Boot= or ProcessTwo=).
            opts.parameters = list(s.parameters)
    if free("ephemeral") and s.ephemeral is not None:
        opts.ephemeral = s.ephemeral
    if free("working_directory") and s.working_directory is not None:
        opts.chdir = s.working_directory
    if free("environment") and s.environment is not None:
        opts.setenv = list(s.environment)
    if free("user") and s.user is not None:
        opts.user = s.user
    if free("capability"):
        if s.capability and not untrusted("capability", "Capability="):
            opts.capability = list(s.capability)
        if s.drop_capability:
            opts.drop_capability = list(s.drop_capability)
    if free("read_only") and s.read_only is not None:
        opts.read_only = s.read_only
    if free("mounts") and s.mounts:
        if not untrusted("mounts", "Bind=, BindReadOnly= and TemporaryFileSystem="):
            opts.bind = [v for kind, v in s.mounts if kind == "bind"]
            opts.bind_ro = [v for kind, v in s.mounts if kind == "bind_ro"]
            opts.tmpfs = [v for kind, v in s.mounts if kind == "tmpfs"]
    if free("network") and s.network_configured():
        if not untrusted("network", "the [Network] settings"):
            veth = bool(s.virtual_ethernet) or s.bridge is not None
            opts.private_network = bool(s.private_network) or veth
            opts.network_veth = veth
            opts.network_bridge = s.bridge
            opts.veth_from = s.where("network") if veth else None
    if free("port") and s.port and not untrusted("port", "Port="):
        opts.notes.append(
            f"{s.where('port')}: ignoring Port=: rootstrap's runner does not forward ports"
        )
    if free("private_users") and s.private_users is not None:
        if not untrusted("private_users", "PrivateUsers="):
            opts.private_users = s.private_users
    if free("syscall_filter") and s.syscall_filter:
        # nspawn drops the whole filter from an untrusted file when it allows anything.
        allows = any(
            not v.startswith("~") and any(not w.startswith("~") for w in v.split())
            for v in s.syscall_filter
        )
        if not (allows and untrusted("syscall_filter", "SystemCallFilter=")):
            opts.system_call_filter = list(s.syscall_filter)
    if free("no_new_privileges") and s.no_new_privileges is not None:
        opts.no_new_privileges = "yes" if s.no_new_privileges else "no"
    if free("hostname") and s.hostname is not None:
        opts.hostname = s.hostname
