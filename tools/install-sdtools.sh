#!/usr/bin/env bash
# Installs dosfstools (mkfs.fat, fsck.fat) and mtools (mcopy, mdir), which `cargo xtask image`
# uses to make the SD card's FAT32 boot partition and the tests use to check it.
# Prints each command it runs; says what to do by hand where it cannot.
set -euo pipefail

have_all() {
    local t
    for t in mkfs.fat fsck.fat mcopy mmd mdir; do
        command -v "$t" >/dev/null 2>&1 || [ -x "/usr/sbin/$t" ] || [ -x "/sbin/$t" ] || return 1
    done
}

if have_all; then
    exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
        echo "error: dosfstools and mtools are missing and this user cannot install packages." >&2
        echo "       Install them as root: apt-get install dosfstools mtools" >&2
        exit 1
    fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: dosfstools and mtools are missing and this is not a Debian/Ubuntu machine." >&2
    echo "       Install them with your package manager (macOS: brew install dosfstools mtools)." >&2
    exit 1
fi

run() {
    echo "+ $*" >&2
    "$@"
}
run $sudo apt-get update -qq
run env DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq dosfstools mtools >/dev/null
have_all || { echo "error: installed dosfstools and mtools, but a tool is still missing" >&2; exit 1; }
