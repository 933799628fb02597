"""One exception tree for everything a user can cause or meet.

    RootstrapError                  exit 1 unless a subclass says otherwise
    ├── UsageError                  exit 2: bad arguments, names, options
    ├── RecipeError                 a recipe file or SUITE that cannot be used
    ├── MirrorError                 no mirror could be found for a distribution
    ├── KeyringError                a keyring that is missing, empty or not a keyring
    ├── VerificationError           signature, Release fields, hashes, sizes
    │   └── IntegrityError          a download whose size or SHA256 is wrong
    ├── DownloadError               network, HTTP status, redirects, timeouts
    ├── ArchiveIndexError                 a Packages index that cannot be parsed or found
    ├── ResolveError                an unsatisfiable request, a conflict, a cycle
    ├── DebError                    an invalid .deb (ar, control, data members)
    ├── UnpackError                 a tar member that would escape or is not allowed
    ├── ConfigureError              dpkg or a maintainer script failed in the new root
    ├── StoreError                  the image store
    │   ├── ImageNotFound
    │   ├── ImageExists
    │   └── ImageBusy
    ├── RunnerError                 the namespace runner
    ├── ResourceError               disk full, no inodes, quota, free space
    └── Interrupted                 exit 130: SIGINT or SIGTERM

Only the CLI prints these (``error: ...`` and ``hint: ...``). Everything below it raises, and
maps foreign exceptions with ``raise ... from exc`` so ``--debug`` still shows the cause.
This module imports nothing but the standard library, so the runner package may use it.
"""

from __future__ import annotations


class RootstrapError(Exception):
    """An error with a subject (file, URL, package or image) and an optional hint."""

    exit_code = 1

    def __init__(self, message: str, *, subject: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.subject = subject
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.subject}: {self.message}" if self.subject else self.message


class UsageError(RootstrapError):
    exit_code = 2


class RecipeError(RootstrapError):
    pass


class MirrorError(RootstrapError):
    pass


class KeyringError(RootstrapError):
    pass


class VerificationError(RootstrapError):
    pass


class IntegrityError(VerificationError):
    pass


class DownloadError(RootstrapError):
    pass


class ArchiveIndexError(RootstrapError):
    pass


class ResolveError(RootstrapError):
    pass


class DebError(RootstrapError):
    pass


class UnpackError(RootstrapError):
    pass


class ConfigureError(RootstrapError):
    pass


class StoreError(RootstrapError):
    pass


class ImageNotFound(StoreError):
    pass


class ImageExists(StoreError):
    pass


class ImageBusy(StoreError):
    pass


class RunnerError(RootstrapError):
    pass


class ResourceError(RootstrapError):
    pass


class Interrupted(RootstrapError):
    exit_code = 130
