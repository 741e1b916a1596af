#!/bin/sh
# pyenv.sh — the Python venv of the test oracles, in this checkout's
# .cache/pyenv, over Debian's python3 (scripts/deps.sh installs the system
# packages). Idempotent, and silent when the pinned versions are there.
set -e
cd "$(dirname "$0")/.."

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

# A flamegraph tool that reads apr trace's outputs (tests/lua/apr/trace/):
# flamegraph-textual's stackcollapse and Chrome-trace parsers (the library
# of the flameshow viewer).
FLAMEGRAPH_VERSION=0.1.2
if ! $PYENV/bin/python -c "import sys, importlib.metadata as m; sys.exit(m.version('flamegraph-textual') != '$FLAMEGRAPH_VERSION')" 2>/dev/null; then
    echo "installing: flamegraph-textual $FLAMEGRAPH_VERSION (Python venv in $PYENV)"
    $PYENV/bin/pip install -q --disable-pip-version-check "flamegraph-textual==$FLAMEGRAPH_VERSION" >/dev/null
fi

# The `openai` client from PyPI, which tests/lua/apr/server/openai_spec.lua
# points at `apr serve` (prometheus above brings promtool for /metrics).
OPENAI_VERSION=3.57.0
if ! $PYENV/bin/python -c "import sys, importlib.metadata as m; sys.exit(m.version('openai') != '$OPENAI_VERSION')" 2>/dev/null; then
    echo "installing: openai $OPENAI_VERSION (Python venv in $PYENV)"
    $PYENV/bin/pip install -q --disable-pip-version-check "openai==$OPENAI_VERSION" >/dev/null
fi

# The official Hugging Face client, which tests/lua/apr/hub/hf_client_spec.lua
# points at the test hub and at the cache apr pull fills (both directions).
HF_HUB_VERSION=2.4.0
if ! $PYENV/bin/python -c "import sys, importlib.metadata as m; sys.exit(m.version('huggingface_hub') != '$HF_HUB_VERSION')" 2>/dev/null; then
    echo "installing: huggingface_hub $HF_HUB_VERSION (Python venv in $PYENV)"
    $PYENV/bin/pip install -q --disable-pip-version-check "huggingface_hub==$HF_HUB_VERSION" >/dev/null
fi
