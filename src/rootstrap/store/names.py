"""Image names, validated as machinectl does (HAZARDS 67).

A name is a hostname (systemd ``hostname_is_valid``: ASCII letters, digits, '-' and '.', labels
that neither start nor end with '-', no empty label, at most 64 characters), optionally led by
one '.' which makes the image hidden. ``.#`` is reserved for the temporary entries of operations
in progress (``image_name_is_valid``) and ``.host`` for the host itself. Every refusal names the
rule that was broken, so the user can fix the name without reading this file.
"""

from __future__ import annotations

import string

from rootstrap.errors import UsageError

MAX_NAME = 64  # HOST_NAME_MAX
_ALLOWED = frozenset(string.ascii_letters + string.digits + "-.")
TEMP_PREFIX = ".#"


def _refuse(name: str, rule: str) -> UsageError:
    shown = repr(name) if not name.isprintable() or not name or name.strip() != name else name
    return UsageError(
        f"not a valid image name: {rule}",
        subject=shown,
        hint="names are hostnames: ASCII letters, digits, '-' and '.', at most 64 characters; "
        "a leading '.' hides the image",
    )


def validate_name(name: str) -> str:
    """Return NAME if it is a valid image name, else raise UsageError naming the broken rule."""
    if not name:
        raise _refuse(name, "it is empty")
    if name in (".", ".."):
        raise _refuse(name, "'.' and '..' are not names")
    if "/" in name:
        raise _refuse(name, "it contains '/'")
    if name.startswith(TEMP_PREFIX):
        raise _refuse(name, "names starting with '.#' are reserved for operations in progress")
    if name == ".host":
        raise _refuse(name, "'.host' is reserved for the host")
    if len(name) > MAX_NAME:
        raise _refuse(name, f"it is {len(name)} characters long, the limit is {MAX_NAME}")
    for ch in name:
        if ch not in _ALLOWED:
            what = (
                "a control character"
                if ord(ch) < 32 or ord(ch) == 127
                else "a non-ASCII character"
                if ord(ch) > 127
                else f"'{ch}'"
            )
            raise _refuse(
                name, f"it contains {what}; only ASCII letters, digits, '-', '.' are allowed"
            )
    body = name[1:] if name.startswith(".") else name
    if not body:
        raise _refuse(name, "it is empty after the hidden-image dot")
    for label in body.split("."):
        if not label:
            raise _refuse(name, "it has an empty label ('..', or a trailing '.')")
        if label.startswith("-") or label.endswith("-"):
            raise _refuse(name, "a label starts or ends with '-'")
    return name


def is_hidden(name: str) -> bool:
    """Hidden images start with '.'; listings show them only with --all."""
    return name.startswith(".")
