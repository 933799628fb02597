"""configure.py without a runner: the script it writes, failure messages, guards, in-root writes.

The script itself runs for real in tests/integration/test_bootstrap_local.py; here it is run by
the host's /bin/sh against stub dpkg commands, so its order of calls is checked exactly.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from rootstrap.build.configure import (
    POLICY_RC_D,
    SSD_STUB,
    Step,
    failure,
    install_guards,
    restore_guards,
    script,
)
from rootstrap.build.rootfiles import in_root, replace_file
from rootstrap.errors import ConfigureError

# What dpkg prints when a postinst fails (src/main/errors.c, src/main/script.c), then goes on.
DPKG_POSTINST_FAILED = """\
Setting up libc6:amd64 (2.36-9) ...
Setting up fail-postinst (1.0) ...
frobnication failed: widget missing
dpkg: error processing package fail-postinst (--configure):
 installed fail-postinst package post-installation script subprocess returned error exit status 3
Setting up apt (2.6.1) ...
Processing triggers for libc-bin (2.36-9+deb12u14) ...
Errors were encountered while processing:
 fail-postinst
"""


def test_failed_postinst_names_package_script_status_and_output() -> None:
    err = failure(DPKG_POSTINST_FAILED, 1)
    assert err.subject == "fail-postinst"
    assert str(err) == (
        "fail-postinst: postinst failed with exit status 3: frobnication failed: widget missing"
    )
    assert "\n" not in str(err)


def test_multiline_output_is_shown_indented_and_arch_qualified_names_match() -> None:
    output = (
        "Setting up libfoo1:amd64 (1.0) ...\nline one\nline two\n"
        "dpkg: error processing package libfoo1:amd64 (--configure):\n"
        " installed libfoo1:amd64 package post-installation script subprocess returned error"
        " exit status 1\n"
    )
    err = failure(output, 1)
    assert err.subject == "libfoo1:amd64"
    assert err.message == "postinst failed with exit status 1; its output:\n  line one\n  line two"


def test_failed_preinst_output_starts_at_its_marker() -> None:
    output = (
        "rootstrap-preinst: base-passwd\nnoise from an earlier preinst\n"
        "rootstrap-preinst: bad\nno space for the frobs\n"
        "rootstrap-failed: bad preinst 7\n"
    )
    err = failure(output, 1)
    assert err.subject == "bad"
    assert err.message == "preinst failed with exit status 7: no space for the frobs"


def test_silent_script_and_dependency_problems() -> None:
    silent = failure(
        "Setting up quiet (1) ...\ndpkg: error processing package quiet (--configure):\n"
        " installed quiet package post-installation script subprocess returned error"
        " exit status 1\n",
        1,
    )
    assert silent.message == "postinst failed with exit status 1 (it printed nothing)"
    deps = failure(
        "dpkg: error processing package hello (--configure):\n"
        " dependency problems - leaving unconfigured\n",
        1,
    )
    assert deps.subject == "hello"
    assert deps.message == "dpkg --configure failed: dependency problems - leaving unconfigured"
    other = failure("dpkg: error: unable to access the dpkg database\n", 2)
    assert isinstance(other, ConfigureError)
    assert "dpkg failed (exit 2)" in other.message and "unable to access" in other.message


STEPS = [
    Step("base-files", "base-files", "amd64", essential=True),
    Step("libc6", "libc6:amd64", "amd64", essential=True),
    Step("libfoo1", "libfoo1:amd64", "amd64", essential=False),
    Step("tool", "tool", "amd64", essential=False, pre_depends=("libfoo1",)),
    Step("late", "late", "all", essential=False),
]


def _run_script(tmp_path: Path, steps: list[Step], failing: str = "") -> tuple[int, list[str]]:
    """Run script(STEPS) with stub dpkg, dpkg-query and preinsts; return (status, call log)."""
    info = tmp_path / "info"
    info.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "log"
    for name in ("dpkg", "dpkg-query"):
        stub = bin_dir / name
        stub.write_text(f'#!/bin/sh\necho "{name} $*" >> {log}\necho 1.21.22\n')
        stub.chmod(0o755)
    for step in steps:
        pre = info / f"{step.info_name}.preinst"
        code = 5 if step.name == failing else 0
        pre.write_text(
            f'#!/bin/sh\necho "preinst {step.name} $* $DPKG_MAINTSCRIPT_PACKAGE '
            f'$DPKG_MAINTSCRIPT_ARCH $DPKG_MAINTSCRIPT_NAME" >> {log}\nexit {code}\n'
        )
        pre.chmod(0o755)
    text = script(steps).replace("/var/lib/dpkg/info/", f"{info}/")
    proc = subprocess.run(
        ["/bin/sh", "-c", text, "configure"],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    calls = log.read_text().splitlines() if log.exists() else []
    return proc.returncode, [c for c in calls if not c.startswith("dpkg-query")]


def test_script_order_essential_then_pre_depends_barriers(tmp_path: Path) -> None:
    status, calls = _run_script(tmp_path, STEPS)
    assert status == 0
    assert calls == [
        "preinst base-files install base-files amd64 preinst",
        "preinst libc6 install libc6 amd64 preinst",
        "dpkg --force-unsafe-io --force-confold --force-configure-any --force-depends "
        "--configure base-files libc6",
        "preinst libfoo1 install libfoo1 amd64 preinst",
        # tool Pre-Depends on libfoo1: libfoo1 is configured before tool's preinst runs, and
        # by name: --pending would also configure tool and late before their preinsts.
        "dpkg --force-unsafe-io --force-confold --force-configure-any --configure libfoo1",
        "preinst tool install tool amd64 preinst",
        "preinst late install late all preinst",
        "dpkg --force-unsafe-io --force-confold --configure --pending",
        "dpkg --force-unsafe-io --force-confold --triggers-only --pending",
    ]


def test_script_of_the_essential_phase_configures_nothing_else(tmp_path: Path) -> None:
    """The bootstrap runs the essential steps and the rest as two scripts, while the database
    says every package is unpacked: the first must not sweep the rest with --pending, which
    would run their postinsts before their preinsts."""
    status, calls = _run_script(tmp_path, [s for s in STEPS if s.essential])
    assert status == 0
    assert [c for c in calls if "--pending" in c] == [
        "dpkg --force-unsafe-io --force-confold --triggers-only --pending"
    ]


def test_script_stops_at_a_failed_preinst(tmp_path: Path) -> None:
    status, calls = _run_script(tmp_path, STEPS, failing="libfoo1")
    assert status != 0
    assert calls[-1].startswith("preinst libfoo1 install")


# --------------------------------------------------------------------------- guards


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "usr/sbin").mkdir(parents=True)
    (root / "etc").mkdir()
    os.symlink("usr/sbin", root / "sbin")
    (root / "usr/sbin/start-stop-daemon").write_bytes(b"\x7fELF real ssd")
    (root / "usr/sbin/start-stop-daemon").chmod(0o755)
    return root


def test_guards_are_installed_and_restored(root: Path) -> None:
    undo = install_guards(root)
    ssd = root / "usr/sbin/start-stop-daemon"
    assert (root / "usr/sbin/policy-rc.d").read_bytes() == POLICY_RC_D
    assert ssd.read_bytes() == SSD_STUB and os.stat(ssd).st_mode & 0o777 == 0o755
    policy = subprocess.run([root / "usr/sbin/policy-rc.d", "x", "start"], check=False)
    assert policy.returncode == 101
    restore_guards(undo)
    assert not (root / "usr/sbin/policy-rc.d").exists()
    assert ssd.read_bytes() == b"\x7fELF real ssd"
    assert sorted(p.name for p in (root / "usr/sbin").iterdir()) == ["start-stop-daemon"]


def test_a_shipped_policy_rc_d_link_is_kept_aside_and_restored(root: Path, tmp_path: Path) -> None:
    host = tmp_path / "host-policy"
    host.write_text("host file\n")
    os.symlink(host, root / "usr/sbin/policy-rc.d")
    undo = install_guards(root)
    assert not (root / "usr/sbin/policy-rc.d").is_symlink()
    restore_guards(undo)
    assert os.readlink(root / "usr/sbin/policy-rc.d") == str(host)
    assert host.read_text() == "host file\n"


@pytest.mark.hazard(63)
def test_writes_replace_a_planted_symlink_and_never_follow_one(root: Path, tmp_path: Path) -> None:
    host = tmp_path / "host-hostname"
    host.write_text("host\n")
    os.symlink(host, root / "etc/hostname")
    replace_file(in_root(root, "etc/hostname"), b"image\n", 0o644)
    assert (root / "etc/hostname").read_text() == "image\n"
    assert not (root / "etc/hostname").is_symlink()
    assert host.read_text() == "host\n"
    # A symlinked directory on the way is refused (bin/sbin/lib, the merged-/usr links, pass).
    os.symlink(tmp_path, root / "etc/apt")
    with pytest.raises(ConfigureError, match="symlink"):
        in_root(root, "etc/apt/sources.list")
    assert in_root(root, "/sbin/policy-rc.d") == root / "sbin/policy-rc.d"
