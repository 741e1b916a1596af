#!/bin/sh
# deps.sh — installs the Debian packages apr builds and tests with, if any is
# missing, and the Python venv of the test oracles (scripts/pyenv.sh).
# Idempotent, and silent when everything is already there.
set -e
cd "$(dirname "$0")/.."
# luajit2 is OpenResty's LuaJIT branch (2023-01): Debian's own luajit snapshot
# (2022-03-20) predates the fix of LuaJIT issue #829, where compiled
# next()/pairs() loops truncate a pointer and crash at random.
PKGS="build-essential clang libclang-rt-14-dev luajit2 libluajit2-5.1-dev libuv1-dev liblz4-dev libzstd-dev
libcurl4-openssl-dev libssl-dev libxxhash-dev lua-cjson lua-luv lua-busted python3 python3-pip python3-jinja2 python3-numpy python3-venv zstd xz-utils
python3-scipy python3-jsonschema python3-pil
patchelf curl ca-certificates prometheus tmux
strace chromium"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "installing:$missing"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# The test oracles' Python venv (its own script: `make test` runs it too,
# so a fresh clone's checkout gets one).
scripts/pyenv.sh
