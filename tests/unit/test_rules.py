"""Each shared rule's table of cases, accepted and refused: names, booleans, --private-users,
the default paths and the host architecture. tests/integration/test_rules_cli.py feeds the same
tables through every verb that applies them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from rootstrap import paths, rules
from rootstrap.errors import UsageError
from rootstrap.linux import arch

# --------------------------------------------------------------------------- host architecture

# (uname -m, userland bits, byte order, hard float) -> Debian's name (dpkg's cputable).
ARCHES = [
    ("x86_64", 64, "little", True, "amd64"),
    ("x86_64", 32, "little", True, "i386"),  # an i386 userland on a 64-bit kernel
    ("i686", 32, "little", True, "i386"),
    ("i586", 32, "little", True, "i386"),
    ("i386", 32, "little", True, "i386"),
    ("aarch64", 64, "little", True, "arm64"),
    ("aarch64", 32, "little", True, "armhf"),  # an armhf userland on an arm64 kernel
    ("armv7l", 32, "little", True, "armhf"),
    ("armv7l", 32, "little", False, "armel"),
    ("armv8l", 32, "little", True, "armhf"),
    ("armv6l", 32, "little", False, "armel"),
    ("armv5tel", 32, "little", False, "armel"),
    ("ppc64le", 64, "little", True, "ppc64el"),
    ("ppc64", 64, "big", True, "ppc64"),
    ("ppc64", 32, "big", True, "powerpc"),
    ("ppc", 32, "big", True, "powerpc"),
    ("s390x", 64, "big", True, "s390x"),
    ("s390x", 32, "big", True, "s390"),
    ("riscv64", 64, "little", True, "riscv64"),
    ("mips64", 64, "little", True, "mips64el"),
    ("mips64", 64, "big", True, "mips64"),
    ("mips64", 32, "little", True, "mipsel"),
    ("mips", 32, "little", True, "mipsel"),
    ("mips", 32, "big", True, "mips"),
    ("loongarch64", 64, "little", True, "loong64"),
    ("sparc64", 64, "big", True, "sparc64"),
    ("parisc64", 32, "big", True, "hppa"),
    ("alpha", 64, "little", True, "alpha"),
    ("m68k", 32, "big", True, "m68k"),
    ("sh4", 32, "little", True, "sh4"),
    ("ia64", 64, "little", True, "ia64"),
    ("weird9", 64, "little", True, "weird9"),  # unknown: passed through, not guessed
]


@pytest.mark.parametrize(("machine", "bits", "order", "hard", "debian"), ARCHES)
def test_uname_to_debian(machine: str, bits: int, order: str, hard: bool, debian: str) -> None:
    assert arch.from_uname(machine, bits=bits, byteorder=order, hard_float=hard) == debian


def _dpkg_answer() -> str:
    dpkg = shutil.which("dpkg")
    assert dpkg, "these tests run on Debian hosts (tests/setup-host.sh)"
    done = subprocess.run([dpkg, "--print-architecture"], capture_output=True, text=True)
    return done.stdout.strip()


def test_host_arch_is_dpkgs_answer_without_asking_dpkg(monkeypatch: pytest.MonkeyPatch) -> None:
    """The uname mapping gives what dpkg says on this host; dpkg itself is never run (a
    bootstrap's first stage needs nothing of the host's dpkg), and the answer is kept."""
    expected = _dpkg_answer()
    monkeypatch.setattr(arch, "_cached", None)
    monkeypatch.setenv("PATH", "/nonexistent")
    assert arch.host_arch() == expected
    monkeypatch.setattr(arch, "from_uname", lambda *a, **k: pytest.fail("computed twice"))
    assert arch.host_arch() == expected


# --------------------------------------------------------------------------- default paths

# (--store/--cache-dir given, the variable's value or None) -> the directory used.
PATHS = [
    (None, None, "DEFAULT"),
    (None, "", "DEFAULT"),  # an empty variable is no setting (as the shell's ${VAR:-default})
    (None, "/env/dir", "/env/dir"),
    ("", "/env/dir", "/env/dir"),
    ("/given", "/env/dir", "/given"),
    ("/given", None, "/given"),
]


@pytest.mark.parametrize(("given", "env", "expected"), PATHS)
@pytest.mark.parametrize(
    ("function", "var", "default"),
    [
        (paths.store_dir, "ROOTSTRAP_STORE", "/var/lib/machines"),
        (paths.cache_dir, "ROOTSTRAP_CACHE", "/var/cache/rootstrap"),
    ],
)
def test_paths(
    monkeypatch: pytest.MonkeyPatch,
    function: Callable[[str | None], str],
    var: str,
    default: str,
    given: str | None,
    env: str | None,
    expected: str,
) -> None:
    if env is None:
        monkeypatch.delenv(var, raising=False)
    else:
        monkeypatch.setenv(var, env)
    assert function(given) == (default if expected == "DEFAULT" else expected)
    if given:
        assert function(Path(given)) == given  # typer hands a Path


# --------------------------------------------------------------------------- names

# (name, why it is not an image name or None, why it is not a machine name or None): the
# refusals say which rule broke. Image names are machine names, optionally led by one '.'.
NAMES: list[tuple[str, str | None, str | None]] = [
    ("a", None, None),
    ("0", None, None),
    ("A-Z", None, None),
    ("debian-12", None, None),
    ("web.example", None, None),
    ("a--b", None, None),  # a double hyphen inside a label is fine (xn--...)
    ("xn--bcher-kva.example", None, None),
    ("x" * 64, None, None),
    (".hidden", None, "starts with '.'"),
    (".a-b.c", None, "starts with '.'"),
    ("." + "x" * 63, None, "starts with '.'"),  # 64 characters with the dot
    ("." + "x" * 64, "65 characters long, the limit is 64", "65 characters long"),
    ("x" * 65, "65 characters long, the limit is 64", "65 characters long"),
    ("", "it is empty", "it is empty"),
    (".", "'.' and '..' are not names", "'.' and '..' are not names"),
    ("..", "'.' and '..' are not names", "'.' and '..' are not names"),
    ("..x", "an empty label", "starts with '.'"),
    ("a/b", "contains '/'", "contains '/'"),
    ("../etc", "contains '/'", "contains '/'"),
    ("-rf", "a label starts or ends with '-'", "a label starts or ends with '-'"),
    ("foo-", "a label starts or ends with '-'", "a label starts or ends with '-'"),
    ("a.-b", "a label starts or ends with '-'", "a label starts or ends with '-'"),
    ("a-.b", "a label starts or ends with '-'", "a label starts or ends with '-'"),
    (".-a", "a label starts or ends with '-'", "starts with '.'"),
    ("a..b", "an empty label", "an empty label"),
    ("a.", "an empty label", "an empty label"),
    (".a.", "an empty label", "starts with '.'"),
    (".#x", "reserved for operations in progress", "reserved for operations in progress"),
    (".#web.0a1b2c3d", "reserved for operations in progress", "reserved"),
    (".host", "'.host' is reserved for the host", "'.host' is reserved for the host"),
    ("my_img", "contains '_'", "contains '_'"),
    ("a b", "contains ' '", "contains ' '"),
    ("a:b", "contains ':'", "contains ':'"),
    ("a\x01b", "a control character", "a control character"),
    ("a\nb", "a control character", "a control character"),
    ("é", "a non-ASCII character", "a non-ASCII character"),
    ("web\u200b", "a non-ASCII character", "a non-ASCII character"),  # zero-width space
]
IMAGE_OK = [n for n, image, _ in NAMES if image is None]
IMAGE_BAD = [(n, image) for n, image, _ in NAMES if image is not None]
MACHINE_OK = [n for n, _, machine in NAMES if machine is None]
MACHINE_BAD = [(n, machine) for n, _, machine in NAMES if machine is not None]


@pytest.mark.hazard(67)
@pytest.mark.parametrize(("name", "image", "machine"), NAMES)
def test_names(name: str, image: str | None, machine: str | None) -> None:
    assert rules.is_image_name(name) == (image is None)
    assert rules.is_machine_name(name) == rules.is_hostname(name) == (machine is None)
    if image is None:
        assert rules.check_image_name(name) == name
    else:
        with pytest.raises(UsageError) as err:
            rules.check_image_name(name)
        assert err.value.message == f"not a valid image name: {rules.image_problem(name)}"
        assert image in err.value.message
        assert err.value.hint and "64 characters" in err.value.hint
        assert err.value.exit_code == 2
    if machine is None:
        assert rules.check_machine_name(name) == name
    else:
        with pytest.raises(UsageError) as err:
            rules.check_machine_name(name)
        assert err.value.message.startswith("not a valid machine name: ")
        assert machine in err.value.message
        assert err.value.hint and "64 characters" in err.value.hint
        assert err.value.exit_code == 2


@pytest.mark.parametrize("name", IMAGE_OK)
def test_new_images_from_outside_cannot_start_hidden(name: str) -> None:
    assert rules.is_hidden(name) == name.startswith(".")
    if rules.is_hidden(name):
        with pytest.raises(UsageError) as err:
            rules.check_image_name(name, hidden=False)
        assert "cannot start hidden" in err.value.message
        assert (
            err.value.hint
            == f"create it as {name[1:]}, then 'rootstrap rename {name[1:]} {name}' hides it"
        )
    else:
        assert rules.check_image_name(name, hidden=False) == name


def test_subjects_show_what_a_terminal_would_hide() -> None:
    for name, shown in (("a b", "a b"), ("", "''"), ("a\nb", "'a\\nb'"), (" a", "' a'")):
        with pytest.raises(UsageError) as err:
            rules.check_image_name(name)
        assert err.value.subject == shown


def test_hostname_option_names_itself() -> None:
    with pytest.raises(UsageError) as err:
        rules.check_machine_name("a_b", "hostname")
    assert (
        err.value.message
        == "not a valid hostname: it contains '_'; only ASCII letters, digits, '-', '.' are allowed"
    )
    assert err.value.hint and err.value.hint.startswith("hostnames: ")


# systemd's hostname_cleanup(): what a machine is called when -M does not name it.
CLEANUP = [
    ("web", "web"),
    (".web", "web"),
    (".a-b.c", "a-b.c"),
    ("my_root", "myroot"),
    ("Web_Server.01", "WebServer.01"),
    ("a..b", "a.b"),
    ("a-.b", "a-b"),
    ("-a-", "a"),
    ("a.", "a"),
    ("a--", "a-"),  # one trailing character dropped, as systemd (then not a valid hostname)
    ("x" * 70, "x" * 64),
    ("é", ""),
    ("...", ""),
    ("", ""),
]


@pytest.mark.parametrize(("name", "cleaned"), CLEANUP)
def test_hostname_cleanup(name: str, cleaned: str) -> None:
    assert rules.hostname_cleanup(name) == cleaned
    if rules.is_hostname(cleaned):
        assert rules.machine_name_from(name) == cleaned
    else:
        with pytest.raises(UsageError) as err:
            rules.machine_name_from(name)
        assert err.value.hint == "name the machine with -M NAME"


@pytest.mark.parametrize("name", IMAGE_OK)
def test_every_image_has_a_machine_name(name: str) -> None:
    assert rules.machine_name_from(name) == name.lstrip(".")


# --------------------------------------------------------------------------- booleans

TRUE = ["1", "yes", "y", "true", "t", "on", "YES", "Yes", "Y", "TRUE", "True", "T", "ON", "oN"]
FALSE = ["0", "no", "n", "false", "f", "off", "NO", "No", "N", "FALSE", "F", "OFF", "Off"]
NOT_BOOLEAN = [
    "", "2", "-1", "00", "maybe", "yess", "ja", "enable", "o", "nope",
    " yes", "yes ", "no\n", "ｙｅｓ", "ＯＮ",  # no stripping; ASCII case only
]  # fmt: skip
BOOLEANS = (
    [(v, True) for v in TRUE] + [(v, False) for v in FALSE] + [(v, None) for v in NOT_BOOLEAN]
)


@pytest.mark.parametrize(("value", "expected"), BOOLEANS)
def test_parse_boolean(value: str, expected: bool | None) -> None:
    if expected is not None:
        assert rules.parse_boolean(value) is expected
        return
    with pytest.raises(UsageError) as err:
        rules.parse_boolean(value, "--no-new-privileges")
    assert err.value.message == "expected a boolean for --no-new-privileges"
    assert err.value.hint == rules.BOOLEAN_HINT
    assert err.value.exit_code == 2


# --------------------------------------------------------------------------- --private-users

PRIVATE_USERS: list[tuple[str, object]] = [
    *((v, None) for v in FALSE),
    *((v, "pick") for v in TRUE),
    ("pick", "pick"),
    ("identity", (0, 65536)),
    ("1000000", (1000000, 65536)),
    ("1000000:65536", (1000000, 65536)),
    ("0:65536", (0, 65536)),
    ("100000:1", (100000, 1)),
    ("4294901759", (4294901759, 65536)),  # the last range that ends at 4294967295
    ("4294901760", "uid range out of bounds"),
    ("65535", "uid range out of bounds"),  # the 16-bit nobody is no uid (parse_uid)
    ("4294967295:1", "uid range out of bounds"),
    ("5:0", "uid range out of bounds"),
    ("Pick", "expected no, yes, pick, identity or UID[:COUNT]"),  # as nspawn: streq()
    ("Identity", "expected no, yes, pick, identity or UID[:COUNT]"),
    ("lots", "expected no, yes, pick, identity or UID[:COUNT]"),
    ("1:", "expected no, yes, pick, identity or UID[:COUNT]"),
    (":5", "expected no, yes, pick, identity or UID[:COUNT]"),
    ("-1", "expected no, yes, pick, identity or UID[:COUNT]"),
    ("1:2:3", "expected no, yes, pick, identity or UID[:COUNT]"),
    (" 5", "expected no, yes, pick, identity or UID[:COUNT]"),
    ("", "expected no, yes, pick, identity or UID[:COUNT]"),
]


@pytest.mark.parametrize(("value", "expected"), PRIVATE_USERS)
def test_parse_private_users(value: str, expected: object) -> None:
    if isinstance(expected, str) and expected != "pick":
        with pytest.raises(UsageError) as err:
            rules.parse_private_users(value)
        assert err.value.message == expected
        assert err.value.exit_code == 2
    else:
        assert rules.parse_private_users(value) == expected


def test_the_lean_path_can_afford_the_rules() -> None:
    """rules and paths load nothing but themselves (no re, typing, typer, httpx or rich):
    ``rootstrap run`` imports them on its start-up budget."""
    code = (
        "import sys, rootstrap.errors; before = set(sys.modules); "
        "import rootstrap.rules, rootstrap.paths; print(sorted(set(sys.modules) - before))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "['rootstrap.paths', 'rootstrap.rules']"


@pytest.mark.parametrize(
    ("debian", "qemu"),
    [("amd64", "x86_64"), ("arm64", "aarch64"), ("armhf", "arm"), ("armel", "arm"),
     ("i386", "i386"), ("ppc64el", "ppc64le"), ("powerpc", "ppc"), ("s390x", "s390x"),
     ("riscv64", "riscv64"), ("mips64el", "mips64el"), ("mipsel", "mipsel"),
     ("loong64", "loongarch64")],
)  # fmt: skip
def test_qemu_binfmt_names(debian: str, qemu: str) -> None:
    assert arch.qemu_name(debian) == qemu
