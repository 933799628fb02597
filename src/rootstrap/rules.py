"""The rules for what users type: machine and image names, booleans, --private-users.

One implementation of each, shared by every door (the lean verbs, the typer verbs, the store, the
runner's registry, the settings-file reader), so that no two verbs disagree on a name or a
``yes``. Like rootstrap.errors, every layer may import it: standard library and rootstrap.errors
only, and not even ``re`` (``rootstrap run`` loads it within its start-up budget). The tables of
accepted and refused cases are tests/unit/test_rules.py; tests/integration/test_rules_cli.py feeds
them through every verb that applies them.

Names, as systemd spells them (src/basic/hostname-util.c, src/shared/discover-image.c):

- A *machine name* is a hostname, systemd's ``hostname_is_valid(name, 0)``
  (``machine_name_is_valid`` adds only ``.host``, machinectl's word for the host itself, which is
  refused here): ASCII letters, digits, '-' and '.', no empty label, no label starting or ending
  with '-', at most 64 characters (HOST_NAME_MAX). Used by ``-M``/``--machine`` and
  ``--hostname``/``Hostname=`` (run, boot, start, show), by the registry of running machines
  (list, status, shell, login, poweroff, reboot, terminate, kill, stop), by enable/disable, and by
  start for its image (the unit instance, the console log and the registry entry are all named
  by it; machinectl start runs ``systemd-nspawn -M NAME``, which refuses the rest).
- An *image name* is a machine name, optionally led by one '.' that hides the image
  (``list-images`` shows it with ``--all`` only). ``.#`` starts the store's temporary entries and
  ``.host`` is the host: both are refused. Used by every verb that names an existing image (run,
  boot, show, list-images, show-image, image-status, clone, rename, remove, read-only,
  export-tar, clean) and by clone and rename for the new name. A *new* image made from outside
  (import-tar, import-fs, bootstrap) cannot start hidden, as under systemd-importd, which checks
  ``hostname_is_valid(local, 0)``; rename hides it afterwards.

  systemd's own ``image_name_is_valid()`` is looser: any file name (UTF-8 without control
  characters, up to 255 bytes) but ``.#*``. rootstrap keeps to names whose machine is nameable:
  an image's name becomes its machine's (the hostname, NAME.nspawn, rootstrap@NAME.service), and
  ``systemd-nspawn -M``, ``machinectl start`` and ``machinectl import-tar`` refuse anything else.
  A store entry outside the rule (made by another tool) is not listed and cannot be named.
- A machine started from an image or ``-D DIR`` without ``-M`` is named as systemd-nspawn names
  it: ``hostname_cleanup()`` of the image's or directory's name (``.web`` runs as ``web``,
  ``-D /srv/my_root`` as ``myroot``).

Booleans are systemd's ``parse_boolean()``: 1/yes/y/true/t/on and 0/no/n/false/f/off, ASCII case
ignored, nothing else (no spaces).
"""

from __future__ import annotations

from rootstrap.errors import UsageError

TYPE_CHECKING = False  # typing costs the lean path an import; only mypy needs Literal
if TYPE_CHECKING:
    from typing import Literal

HOST_NAME_MAX = 64
TEMP_PREFIX = ".#"  # the store's entries for operations in progress
_LDH = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")
_HOSTNAME_HINT = (
    "ASCII letters, digits, '-' and '.', labels that neither start nor end with '-', "
    "at most 64 characters"
)


# --------------------------------------------------------------------------- names


def _shown(name: str) -> str:
    """NAME as an error's subject: quoted when it would not read as itself on a terminal."""
    if not name or not name.isprintable() or name.strip() != name:
        return repr(name)
    return name


def _char_problem(name: str) -> str | None:
    for ch in name:
        if ch not in _LDH and ch != ".":
            code = ord(ch)
            what = (
                "a control character"
                if code < 32 or code == 127
                else "a non-ASCII character"
                if code > 127
                else f"'{ch}'"
            )
            return f"it contains {what}; only ASCII letters, digits, '-', '.' are allowed"
    return None


def _common_problem(name: str) -> str | None:
    """What machine and image names share: the whole-name rules, in the order a user would
    fix them."""
    if not name:
        return "it is empty"
    if name in (".", ".."):
        return "'.' and '..' are not names"
    if "/" in name:
        return "it contains '/'"
    if name.startswith(TEMP_PREFIX):
        return "names starting with '.#' are reserved for operations in progress"
    if name == ".host":
        return "'.host' is reserved for the host"
    if len(name) > HOST_NAME_MAX:
        return f"it is {len(name)} characters long, the limit is {HOST_NAME_MAX}"
    return _char_problem(name)


def _labels_problem(body: str) -> str | None:
    """hostname_is_valid()'s label rules for BODY (no leading dot left)."""
    if not body:
        return "it is empty after the hidden-image dot"
    for label in body.split("."):
        if not label:
            return "it has an empty label ('..', or a leading or trailing '.')"
        if label[0] == "-" or label[-1] == "-":
            return "a label starts or ends with '-'"
    return None


def hostname_problem(name: str) -> str | None:
    """Why NAME is not a hostname (systemd's ``hostname_is_valid(name, 0)``), or None: which
    is also why it is not a machine name."""
    problem = _common_problem(name)
    if problem is None and name.startswith("."):
        return "it starts with '.' (only an image name may, to hide the image)"
    return problem or _labels_problem(name)


def image_problem(name: str) -> str | None:
    """Why NAME is not an image name, or None (see the module docstring)."""
    problem = _common_problem(name)
    return problem or _labels_problem(name[1:] if name.startswith(".") else name)


def is_hostname(name: str) -> bool:
    """systemd's ``hostname_is_valid(name, 0)``: a valid hostname, machine name or
    ``Hostname=``."""
    return hostname_problem(name) is None


is_machine_name = is_hostname  # machine names are hostnames (machine_name_is_valid)


def is_image_name(name: str) -> bool:
    """NAME is a valid image name (a hidden one included)."""
    return image_problem(name) is None


def is_hidden(name: str) -> bool:
    """Hidden images start with '.'; listings show them only with --all."""
    return name.startswith(".")


def check_machine_name(name: str, what: str = "machine name") -> str:
    """Return NAME if it is a machine name (WHAT: also "hostname"), else raise UsageError
    (exit 2) naming the broken rule."""
    problem = hostname_problem(name)
    if problem is not None:
        named = "hostnames" if what == "hostname" else f"{what}s are hostnames"
        raise UsageError(
            f"not a valid {what}: {problem}",
            subject=_shown(name),
            hint=f"{named}: {_HOSTNAME_HINT}",
        )
    return name


def check_image_name(name: str, *, hidden: bool = True) -> str:
    """Return NAME if it is an image name, else raise UsageError (exit 2) naming the broken
    rule. HIDDEN False: the name of a new image made from outside (import-tar, import-fs,
    bootstrap), which may not start with '.'."""
    problem = image_problem(name)
    if problem is None and not hidden and is_hidden(name):
        raise UsageError(
            "not a valid image name: a new image cannot start hidden (as machinectl import-tar)",
            subject=_shown(name),
            hint=f"create it as {name[1:]}, then 'rootstrap rename {name[1:]} {name}' hides it",
        )
    if problem is not None:
        raise UsageError(
            f"not a valid image name: {problem}",
            subject=_shown(name),
            hint="image names are hostnames (" + _HOSTNAME_HINT + "); a leading '.' hides the "
            "image",
        )
    return name


def hostname_cleanup(name: str) -> str:
    """systemd's ``hostname_cleanup()``: NAME with every character that may not be in a
    hostname dropped, leading, repeated and misplaced dots and dashes too, cut to 64
    characters (``.web`` -> ``web``, ``my_root`` -> ``myroot``). May return ''."""
    out: list[str] = []
    dot = hyphen = True  # as if a '.' came before the first character
    for ch in name:
        if len(out) >= HOST_NAME_MAX:
            break
        if ch == ".":
            if dot or hyphen:
                continue
            out.append(ch)
            dot, hyphen = True, False
        elif ch == "-":
            if dot:
                continue
            out.append(ch)
            dot, hyphen = False, True
        elif ch in _LDH:
            out.append(ch)
            dot = hyphen = False
    if out and out[-1] in "-.":
        out.pop()
    return "".join(out)


def machine_name_from(name: str) -> str:
    """The machine name systemd-nspawn gives an image or directory named NAME when it is not
    told one with -M: ``hostname_cleanup(NAME)``. UsageError when nothing valid is left."""
    machine = hostname_cleanup(name)
    if not is_hostname(machine):
        raise UsageError(
            "no machine name can be made of this name",
            subject=_shown(name),
            hint="name the machine with -M NAME",
        )
    return machine


# --------------------------------------------------------------------------- values

_TRUE = ("1", "yes", "y", "true", "t", "on")
_FALSE = ("0", "no", "n", "false", "f", "off")
BOOLEAN_HINT = "a boolean is yes/no, y/n, true/false, t/f, on/off or 1/0 (in any case)"


def parse_boolean(value: str, what: str | None = None) -> bool:
    """systemd's ``parse_boolean()``: True for 1/yes/y/true/t/on, False for 0/no/n/false/f/off,
    ASCII case ignored; else UsageError (exit 2) whose subject is VALUE. WHAT (an option, as
    ``--no-new-privileges``) ends the message."""
    lowered = value.lower() if value.isascii() else value  # strcasecmp folds ASCII only
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise UsageError(
        "expected a boolean" + (f" for {what}" if what else ""),
        subject=_shown(value),
        hint=BOOLEAN_HINT,
    )


UID_RANGE = 0x10000  # one container's 64K uids, nspawn's default range
_UID_INVALID = 0xFFFFFFFF


def parse_private_users(value: str) -> tuple[int, int] | Literal["pick"] | None:
    """``--private-users=`` and ``PrivateUsers=``: None for no user namespace (a false
    boolean), ``"pick"`` for yes or pick (a true boolean: rootstrap picks a range for yes
    too, see runner.pick_uid_range), ``(0, 65536)`` for identity, ``(UID, COUNT)`` for
    UID[:COUNT] (COUNT 65536 when left out). The numbers as systemd takes them: UID neither
    65535 nor 4294967295 (parse_uid), COUNT at least 1, UID + COUNT at most 4294967295
    (userns_shift_range_valid). A bare 0 or 1 is a boolean, as in a settings file (the nspawn
    command line reads it as a UID: write 0:65536). UsageError (exit 2) otherwise."""
    lowered = value.lower() if value.isascii() else value
    if lowered in _FALSE:
        return None
    if lowered in _TRUE or value == "pick":
        return "pick"
    if value == "identity":
        return (0, UID_RANGE)
    base, colon, count = value.partition(":")
    digits = "0123456789"
    if not base or not all(c in digits for c in base + count) or (colon and not count):
        raise UsageError("expected no, yes, pick, identity or UID[:COUNT]", subject=_shown(value))
    shift, size = int(base), int(count) if colon else UID_RANGE
    if shift in (0xFFFF, _UID_INVALID) or size == 0 or shift > _UID_INVALID - size:
        raise UsageError(
            "uid range out of bounds",
            subject=_shown(value),
            hint="UID[:COUNT]: COUNT >= 1, UID + COUNT <= 4294967295, UID not 65535",
        )
    return (shift, size)
