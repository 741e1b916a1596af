-- hub/cache.lua — the Hugging Face hub cache, laid out as huggingface_hub
-- lays it out, so that files apr pulls are found by Python tools and
-- theirs by apr:
--
--   $HF_HUB_CACHE (or $HF_HOME/hub, or ~/.cache/huggingface/hub)
--     models--ORG--NAME/
--       blobs/<etag>                 the bytes (etag: the sha256 of an LFS file)
--       snapshots/<commit>/<path>    relative symlinks to ../../blobs/<etag>
--       refs/<revision>              the commit a branch or tag pointed to
--     .locks/models--ORG--NAME/<etag>.lock   flock while a blob is written
--     CACHEDIR.TAG
local uv = require "luv"
local core = require "apr.core"
local C, ffi = core.C, core.ffi

local M = {}

local function env(name)
    local v = os.getenv(name)
    if v and v ~= "" then return v end
end

-- The folder of the cache, from the same variables as huggingface_hub.
function M.dir()
    local hub = env("HF_HUB_CACHE") or env("HUGGINGFACE_HUB_CACHE")
    if hub then return hub end
    local home = env("HF_HOME")
    if not home then
        local xdg = env("XDG_CACHE_HOME") or ((env("HOME") or "/tmp") .. "/.cache")
        home = xdg .. "/huggingface"
    end
    return home .. "/hub"
end

-- Is p a path that stays inside the folder it is joined to? A hub's
-- listing, a revision or --file name may hold anything; none may make apr
-- write outside the cache (huggingface_hub refuses the same).
function M.safe_relative(p)
    if type(p) ~= "string" or p == "" or #p > 4096 or p:sub(1, 1) == "/" or p:find("[%z\\]") then
        return false
    end
    for seg in (p .. "/"):gmatch("([^/]*)/") do
        if seg == "" or seg == "." or seg == ".." then return false end
    end
    return true
end

function M.repo_dir(repo_id)
    return M.dir() .. "/models--" .. repo_id:gsub("/", "--")
end

function M.blob(repo_id, etag) return M.repo_dir(repo_id) .. "/blobs/" .. etag end

function M.snapshot_file(repo_id, commit, path)
    return M.repo_dir(repo_id) .. "/snapshots/" .. commit .. "/" .. path
end

-- mkdir -p; returns true or nil and a message.
function M.mkdir(dir)
    if uv.fs_stat(dir) then return true end
    local parent = dir:match("^(.+)/[^/]+$")
    if parent and parent ~= dir then
        local ok, err = M.mkdir(parent)
        if not ok then return nil, err end
    end
    local ok, err = uv.fs_mkdir(dir, tonumber("755", 8))
    if not ok and not (err or ""):match("^EEXIST") then return nil, "cannot create " .. dir .. ": " .. err end
    return true
end

-- Writes a small file whole: a tmp file renamed over it, so a reader never
-- sees half of it.
local function write_atomic(path, text)
    local tmp = string.format("%s.%d.%x.tmp", path, uv.os_getpid(), uv.hrtime() % 2 ^ 31)
    local f, err = io.open(tmp, "wb")
    if not f then return nil, err end
    local ok = f:write(text)
    ok = f:close() and ok
    if not ok then os.remove(tmp) return nil, "cannot write " .. path end
    local renamed, rerr = os.rename(tmp, path)
    if not renamed then os.remove(tmp) return nil, rerr end
    return true
end

local COMMIT = "^%x+$"

-- The commit a revision names in the cache: the revision itself when it
-- is a commit with a snapshot, else what refs/<revision> holds; nil if
-- neither.
function M.read_ref(repo_id, rev)
    local dir = M.repo_dir(repo_id)
    if #rev == 40 and rev:match(COMMIT) and uv.fs_stat(dir .. "/snapshots/" .. rev) then return rev end
    local f = io.open(dir .. "/refs/" .. rev, "rb")
    if not f then return nil end
    local commit = (f:read("*a") or ""):match("^%s*(%x+)%s*$")
    f:close()
    return commit
end

-- Records that rev pointed to commit (nothing when rev is the commit).
function M.write_ref(repo_id, rev, commit)
    if rev == commit then return true end
    local path = M.repo_dir(repo_id) .. "/refs/" .. rev
    local ok, err = M.mkdir(path:match("^(.*)/"))
    if not ok then return nil, err end
    return write_atomic(path, commit)  -- no newline, as huggingface_hub writes it
end

-- A relative link from the snapshot to the blob (as huggingface_hub makes
-- them, so the cache can be moved whole).
function M.link(repo_id, commit, path, etag)
    local dst = M.snapshot_file(repo_id, commit, path)
    local ok, err = M.mkdir(dst:match("^(.*)/"))
    if not ok then return nil, err end
    local depth = select(2, path:gsub("/", "")) + 2
    local target = string.rep("../", depth) .. "blobs/" .. etag
    local current = uv.fs_readlink(dst)
    if current == target then return dst end
    if current or uv.fs_lstat(dst) then os.remove(dst) end
    local linked, lerr = uv.fs_symlink(target, dst)
    if not linked then return nil, "cannot link " .. dst .. ": " .. tostring(lerr) end
    return dst
end

-- The files of a snapshot (paths relative to it), those whose link leads
-- to a blob that is there; empty if there is no such snapshot.
function M.snapshot_files(repo_id, commit)
    local root = M.repo_dir(repo_id) .. "/snapshots/" .. commit
    local out = {}
    local function walk(dir, prefix)
        local req = uv.fs_scandir(dir)
        if not req then return end
        while true do
            local name, typ = uv.fs_scandir_next(req)
            if not name then break end
            local full = dir .. "/" .. name
            if typ == "directory" then
                walk(full, prefix .. name .. "/")
            else
                local st = uv.fs_stat(full)  -- follows the link: nil when the blob is gone
                if st and st.type == "file" then out[#out + 1] = prefix .. name end
            end
        end
    end
    walk(root, "")
    table.sort(out)
    return out
end

-- The snapshots of a repository in the cache (commits), newest first.
function M.snapshots(repo_id)
    local req = uv.fs_scandir(M.repo_dir(repo_id) .. "/snapshots")
    local out = {}
    if not req then return out end
    while true do
        local name = uv.fs_scandir_next(req)
        if not name then break end
        local st = uv.fs_stat(M.repo_dir(repo_id) .. "/snapshots/" .. name)
        out[#out + 1] = { commit = name, mtime = st and st.mtime.sec or 0 }
    end
    table.sort(out, function(a, b) return a.mtime > b.mtime end)
    for i, s in ipairs(out) do out[i] = s.commit end
    return out
end

-- Takes the blob's lock (huggingface_hub's path), waiting for another
-- downloader to finish (on_wait() is called first if it must wait);
-- returns a release function, or nil and a message.
function M.lock(repo_id, etag, on_wait)
    local dir = M.dir() .. "/.locks/models--" .. repo_id:gsub("/", "--")
    local ok, err = M.mkdir(dir)
    if not ok then return nil, err end
    local box = ffi.new("int[1]")
    local path = dir .. "/" .. etag .. ".lock"
    local status = C.apr_lockfile_acquire(path, 0, box)
    if status == C.APR_ERR_BUSY then
        if on_wait then on_wait() end
        status = C.apr_lockfile_acquire(path, -1, box)
    end
    if status ~= 0 then return core.failure(status) end
    local fd = box[0]
    return function() C.apr_lockfile_release(fd) end
end

-- Marks the cache for backup tools (the CACHEDIR.TAG convention), as
-- huggingface_hub does.
function M.tag()
    local path = M.dir() .. "/CACHEDIR.TAG"
    if uv.fs_stat(path) then return end
    write_atomic(path, "Signature: 8a477f597d28d172789f06886806bc55\n" ..
        "# This file is a cache directory tag created by apr (Hugging Face hub cache).\n")
end

return M
