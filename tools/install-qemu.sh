#!/usr/bin/env bash
# Installs a QEMU new enough for exo (>= 9, for the raspi4b machine) on Debian or Ubuntu.
# Debian bookworm ships 7.2, so there the backports suite is added on the mirror the
# machine's own bookworm line already uses. Prints what to do by hand where it cannot.
set -euo pipefail

need_major=9

have_version() {
    command -v qemu-system-aarch64 >/dev/null 2>&1 || return 1
    local v
    v=$(qemu-system-aarch64 --version | sed -n 's/.*version \([0-9]*\)\..*/\1/p' | head -n1)
    [ -n "$v" ] && [ "$v" -ge "$need_major" ]
}

if have_version; then
    exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
        echo "error: QEMU >= $need_major is missing and this user cannot install packages." >&2
        echo "       Install qemu-system-arm (>= $need_major) as root, then run this again." >&2
        exit 1
    fi
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: QEMU >= $need_major (qemu-system-aarch64) is missing and this is not a Debian/Ubuntu" >&2
    echo "       machine. Install QEMU $need_major or newer with your package manager." >&2
    exit 1
fi

. /etc/os-release
echo "exo: installing QEMU (qemu-system-arm >= $need_major) for ${PRETTY_NAME:-this system}..." >&2

if [ "${VERSION_CODENAME:-}" = "bookworm" ]; then
    # Find the mirror the bookworm suite already comes from (deb822 or one-line format).
    mirror=$(grep -rhs -A3 '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | awk '/^URIs:/{u=$2} /^Suites:.*bookworm( |$)/{print u; exit}')
    if [ -z "$mirror" ]; then
        mirror=$(grep -hs '^deb .* bookworm ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
            | awk '{for(i=2;i<=NF;i++) if ($i ~ /^(https?|file):/) {print $i; exit}}' | head -n1)
    fi
    mirror=${mirror:-http://deb.debian.org/debian}
    list=/etc/apt/sources.list.d/exo-bookworm-backports.list
    if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        echo "deb $mirror bookworm-backports main" | $sudo tee "$list" >/dev/null
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq -t bookworm-backports \
        qemu-system-arm >/dev/null
else
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq qemu-system-arm >/dev/null
fi

if ! have_version; then
    echo "error: installed qemu-system-arm, but qemu-system-aarch64 is still older than $need_major:" >&2
    qemu-system-aarch64 --version >&2 || true
    echo "       Ubuntu 24.04+ and Debian trixie ship a new enough QEMU; on bookworm use bookworm-backports." >&2
    exit 1
fi
qemu-system-aarch64 --version | head -n1 >&2
