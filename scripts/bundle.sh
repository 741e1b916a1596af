#!/bin/sh
# bundle.sh OUTDIR — a relocatable apr: the binary, its Lua files, and the
# shared libraries and Lua C modules it loads that a bare machine may lack
# (found through $ORIGIN/lib), so it runs where no Debian package is
# installed (the GPU machine). glibc itself is taken from the host.
set -e
out=${1:-dist/apr}
rm -rf "$out"
mkdir -p "$out/lib/lua" "$out/lua"
cp apr "$out/"
cp -r lua/apr "$out/lua/"
[ -d models ] && ls models/*.gguf >/dev/null 2>&1 && mkdir -p "$out/models"

# Lua C modules: luv and cjson from Debian, and the pure-Lua libraries busted
# needs so the specs can run in the bundle too.
multi=$(cc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
for m in luv cjson lfs term/core system/core; do
    src="/usr/lib/$multi/lua/5.1/$m.so"
    [ -f "$src" ] || continue
    mkdir -p "$out/lib/lua/$(dirname "$m")"
    cp "$src" "$out/lib/lua/$m.so"
done
for d in busted luassert say pl cliargs term system mediator.lua dkjson.lua cliargs.lua; do
    [ -e "/usr/share/lua/5.1/$d" ] && cp -r "/usr/share/lua/5.1/$d" "$out/lib/lua/"
done

# Shared libraries the binary and the modules need, minus glibc's own.
libs=$( (ldd "$out/apr"; for so in $(find "$out/lib/lua" -name '*.so'); do ldd "$so"; done) \
        | awk '/=> \// {print $3}' | sort -u \
        | grep -vE '/(libc|libm|libdl|libpthread|librt|ld-linux[^/]*|libgcc_s|libstdc\+\+)\.so' || true)
for l in $libs; do cp -L "$l" "$out/lib/"; done
# readline is optional (dlopen'ed by the REPL): carry it when present.
for l in /lib/$multi/libreadline.so.8 /lib/$multi/libtinfo.so.6; do
    [ -f "$l" ] && cp -L "$l" "$out/lib/"
done
# CUPTI, which `apr trace --kernels` loads with dlopen (so ldd does not list
# it), from the toolkit the binary was built with.
if "$out/apr" version --json 2>/dev/null | grep -q '"cuda":true'; then
    cuda=${CUDA_HOME:-/usr/local/cuda}
    for d in "$cuda/lib64" "$cuda/extras/CUPTI/lib64" "$cuda/lib"; do
        l=$(ls "$d"/libcupti.so.[0-9]* 2>/dev/null | head -1)
        if [ -n "$l" ]; then
            cp -L "$l" "$out/lib/"
            break
        fi
    done
fi
# Modules loaded with dlopen do not inherit the executable's RUNPATH: give
# each its own so libuv is found beside it.
if command -v patchelf >/dev/null; then
    for so in $(find "$out/lib/lua" -name '*.so'); do
        depth=$(echo "${so#$out/lib/}" | awk -F/ '{print NF-1}')
        up=$(printf '../%.0s' $(seq 1 "$depth"))
        patchelf --set-rpath "\$ORIGIN/$up" "$so"
    done
fi
# A library's RUNPATH serves its own needs only: libcurl must find its TLS,
# HTTP/2 and compression libraries beside it, not on the host.
if command -v patchelf >/dev/null; then
    for so in "$out"/lib/*.so*; do patchelf --set-rpath '$ORIGIN' "$so"; done
fi
cat > "$out/README" <<'TXT'
apr, relocatable: run ./apr from this folder or from anywhere through its path.
lib/ holds the shared libraries and Lua modules it loads (through $ORIGIN).
TXT
du -sh "$out" | awk '{print "bundle: " $2 " (" $1 ")"}'
