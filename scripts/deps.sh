#!/bin/sh
# deps.sh — installs the Debian packages apr builds and tests with, if any is
# missing. Idempotent, and silent when everything is already there.
set -e
PKGS="build-essential clang libclang-rt-14-dev luajit libluajit-5.1-dev libuv1-dev liblz4-dev libzstd-dev
libcurl4-openssl-dev lua-cjson lua-luv lua-busted python3 python3-pip python3-jinja2 python3-numpy zstd xz-utils
patchelf curl ca-certificates"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing:$missing"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
$SUDO apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
