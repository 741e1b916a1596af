-- checksum.lua — SHA-256 of whole model files, and its sidecar cache.
--
-- Hashing a 20 GB file takes a while, so the digest is kept in a sidecar
-- keyed by the file's size and modification time: FILE.sha256 beside the
-- file when its folder is writable, else $XDG_CACHE_HOME/apr/sha256/ (read-
-- only fixture folders, system model stores). A sidecar whose size or
-- mtime no longer match is stale: it is ignored and rewritten.
--
-- The sidecar is sha256sum's format plus one comment line:
--   <64 hex digits>  <file name>
--   # apr: size=<bytes> mtime=<seconds>.<nanoseconds>
local core = require "apr.core"
local C, ffi = core.C, core.ffi
local xdg = require "apr.fs.xdg"
local replace = require "apr.fs.replace"

local M = {}

M.CHUNK = 64 * 2 ^ 20  -- bytes hashed between progress updates and Ctrl+C checks

local function stat(path)
    local uv = require "luv"
    local st = uv.fs_stat(path)
    if not st then return nil end
    return { size = st.size, mtime = string.format("%d.%09d", st.mtime.sec, st.mtime.nsec) }
end

local function basename(path) return path:match("([^/]+)$") or path end

local function absolute(path)
    if path:sub(1, 1) == "/" then return path end
    return (os.getenv("PWD") or ".") .. "/" .. path
end

local function sha256_hex(data, n)
    local h = ffi.gc(C.apr_sha256_new(), C.apr_sha256_free)
    C.apr_sha256_update(h, data, n)
    local hex = ffi.new("char[65]")
    C.apr_sha256_final(h, nil, hex)
    return ffi.string(hex)
end

-- The cache folder's sidecar for path: named by the hash of its absolute
-- path, so files of the same name in different folders do not collide.
local function cache_sidecar(path)
    local dir = (xdg.cache_dir() or "/tmp/.cache/apr") .. "/sha256"
    local abs = absolute(path)
    return dir, dir .. "/" .. sha256_hex(abs, #abs) .. ".sha256"
end

local bytes_box, len_box = ffi.new("char *[1]"), ffi.new("uint64_t[1]")

-- Through the runtime's reader, which refuses what is not a regular file
-- without opening it for a blocking read: a sidecar path that is a FIFO
-- would make io.open wait for a writer forever (issue 16).
local function read_sidecar(file)
    if C.apr_file_read(file, bytes_box, len_box) ~= 0 then return nil end  -- none, unreadable, not a file
    local text = ffi.string(bytes_box[0], len_box[0])
    C.apr_free(bytes_box[0])
    local hex = text:match("^(%x+)  ")
    local size, mtime = text:match("\n# apr: size=(%d+) mtime=([%d.]+)")
    if not hex or #hex ~= 64 or not size then return nil end
    return { hex = hex:lower(), size = tonumber(size), mtime = mtime }
end

-- recorded(path) -> hex, fresh: the digest some sidecar holds for path
-- (beside the file first, then the cache) and whether the file's size and
-- mtime still match it; nil when there is none.
function M.recorded(path)
    local st = stat(path)
    local best
    for _, file in ipairs({ path .. ".sha256", select(2, cache_sidecar(path)) }) do
        local s = read_sidecar(file)
        if s then
            local fresh = st and s.size == st.size and s.mtime == st.mtime
            if fresh then return s.hex, true end
            best = best or s
        end
    end
    if best then return best.hex, false end
    return nil
end

-- store(path, hex [, opts]): writes the sidecar, beside the file if
-- possible (opts.beside = false: in the cache folder only, for folders
-- another program lays out, such as the Hugging Face hub cache). A failure
-- to write anywhere only costs the cache, so it is silent.
function M.store(path, hex, opts)
    local st = stat(path)
    if not st then return false end
    local text = string.format("%s  %s\n# apr: size=%d mtime=%s\n", hex, basename(path), st.size, st.mtime)
    local dir, cached = cache_sidecar(path)
    local files = { path .. ".sha256", cached }
    -- A Hugging Face cache snapshot holds only the hub's files (its tools
    -- would list a sidecar there as one of the model's).
    local hub_snapshot = path:find("/models%-%-[^/]+/snapshots/") ~= nil
    if hub_snapshot or (opts and opts.beside == false) then files = { cached } end
    for _, file in ipairs(files) do
        if file == cached then xdg.mkdir(dir) end
        if replace.write(file, text) then return true end
    end
    return false
end

local path_box, bytes_box, size_box = ffi.new("const char *[1]"), ffi.new("const void *[1]"), ffi.new("uint64_t[1]")

-- compute(file [, k [, upto]]) -> hex of the bytes of an apr.open file's
-- k-th file (1-based, default 1: a split model has one per part) as stored
-- (or of its first `upto` bytes), hashed in CHUNK pieces with a progress
-- line on a terminal; nil, "interrupted" if Ctrl+C was pressed.
function M.compute(file, k, upto)
    k = k or 1
    local st = C.apr_source_file(file:handle(), k - 1, path_box, bytes_box, size_box)
    if st ~= 0 then return core.failure(st) end
    local base = ffi.cast("const uint8_t *", bytes_box[0])
    local size = math.min(tonumber(size_box[0]), upto or math.huge)
    local name = ffi.string(path_box[0])
    local h = ffi.gc(C.apr_sha256_new(), C.apr_sha256_free)
    local progress = require("apr.cli.term").progress("SHA256 " .. basename(name))
    local done = 0
    while done < size do
        if C.apr_interrupted() ~= 0 then
            progress.finish()
            return nil, "interrupted"
        end
        local n = math.min(M.CHUNK, size - done)
        C.apr_sha256_update(h, base + done, n)
        done = done + n
        progress.update(done, size)
    end
    progress.finish()
    local hex = ffi.new("char[65]")
    C.apr_sha256_final(h, nil, hex)
    return ffi.string(hex)
end

-- digest(file [, opts [, k]]) -> hex of file k (1-based, default 1) of an
-- apr.open file: the fresh sidecar's digest, or computed and stored.
-- opts.cache = false always computes (and refreshes the sidecar).
function M.digest(file, opts, k)
    opts, k = opts or {}, k or 1
    local path = file.files[k].path
    if opts.cache ~= false then
        local hex, fresh = M.recorded(path)
        if hex and fresh then return hex end
    end
    local hex, err = M.compute(file, k)
    if not hex then return nil, err end
    M.store(path, hex)
    return hex
end

return M
