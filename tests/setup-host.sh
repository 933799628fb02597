#!/bin/sh
# Install what the test suite needs on a Debian host (as root), into ./.venv and the system.
set -eu
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends \
    python3-venv dpkg-dev gnupg sqv curl ca-certificates openssl \
    debootstrap mmdebstrap systemd-container bubblewrap busybox-static \
    btrfs-progs xfsprogs e2fsprogs util-linux iproute2 arch-test \
    tar gzip xz-utils zstd libcap2-bin attr acl strace >/dev/null
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[test]'
