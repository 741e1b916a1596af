#!/bin/sh
# deps.sh — installs the Debian packages apr builds and tests with, if any is
# missing, and the Python venv of the test oracles. Idempotent, and silent
# when everything is already there.
set -e
cd "$(dirname "$0")/.."
# luajit2 is OpenResty's LuaJIT branch (2023-01): Debian's own luajit snapshot
# (2022-03-20) predates the fix of LuaJIT issue #829, where compiled
# next()/pairs() loops truncate a pointer and crash at random.
PKGS="build-essential clang libclang-rt-14-dev luajit2 libluajit2-5.1-dev libuv1-dev liblz4-dev libzstd-dev
libcurl4-openssl-dev lua-cjson lua-luv lua-busted python3 python3-pip python3-jinja2 python3-numpy python3-venv zstd xz-utils
patchelf curl ca-certificates prometheus"
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

# The oracle of the quantized formats' tests: the gguf package from PyPI, in
# a venv over Debian's python3 and numpy (Debian's python is "externally
# managed", so pip cannot install into it).
PYENV=.cache/pyenv
GGUF_VERSION=0.19.0
if ! $PYENV/bin/python -c "import gguf, sys, importlib.metadata as m; sys.exit(m.version('gguf') != '$GGUF_VERSION')" 2>/dev/null; then
    echo "installing: gguf $GGUF_VERSION (Python venv in $PYENV)"
    rm -rf $PYENV
    /usr/bin/python3 -m venv --system-site-packages $PYENV
    $PYENV/bin/pip install -q --disable-pip-version-check "gguf==$GGUF_VERSION" >/dev/null
fi

# The oracle of the tokenizer's cross-check (tests/lua/apr/tokenizer_spec.lua):
# Hugging Face tokenizers, in the same venv.
TOKENIZERS_VERSION=0.23.3
if ! $PYENV/bin/python -c "import sys, importlib.metadata as m; sys.exit(m.version('tokenizers') != '$TOKENIZERS_VERSION')" 2>/dev/null; then
    echo "installing: tokenizers $TOKENIZERS_VERSION (Python venv in $PYENV)"
    $PYENV/bin/pip install -q --disable-pip-version-check "tokenizers==$TOKENIZERS_VERSION" >/dev/null
fi

# The `openai` client from PyPI, which tests/lua/apr/server/openai_spec.lua
# points at `apr serve` (prometheus above brings promtool for /metrics).
OPENAI_VERSION=3.57.0
if ! $PYENV/bin/python -c "import sys, importlib.metadata as m; sys.exit(m.version('openai') != '$OPENAI_VERSION')" 2>/dev/null; then
    echo "installing: openai $OPENAI_VERSION (Python venv in $PYENV)"
    $PYENV/bin/pip install -q --disable-pip-version-check "openai==$OPENAI_VERSION" >/dev/null
fi
