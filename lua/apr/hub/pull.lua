-- hub/pull.lua — `apr pull`: a model's files from the Hugging Face Hub into
-- the hub cache, verified, and optionally out of it to a path of one's own.
--
-- For each file the quantization names (hub/files.lua on the hub's
-- listing): HEAD it for the commit, the blob's ETag, size and location;
-- record refs/<rev>; under the blob's lock, download it to
-- blobs/<etag>.incomplete (lua/apr/download.lua: parallel ranges, resume,
-- retries, SHA-256 against the listing's lfs.oid) and rename it to
-- blobs/<etag>; link snapshots/<commit>/<path> to it. A blob already there
-- is not fetched again. The verified digest is recorded where `apr info`
-- and `apr verify --checksum` read it (the _checksum sidecar). When the
-- file changes on the hub mid-download, or a signed CDN link expires, the
-- file is resolved again and the download goes on from what is valid.
local uv = require "luv"
local api = require "apr.hub.api"
local cache = require "apr.hub.cache"
local files = require "apr.hub.files"
local ref_mod = require "apr.hub.ref"
local download = require "apr.download"
local checksum = require "apr.checksum"

local M = {}

local RESOLVES = 4   -- times one file may be resolved again (changed, expired link)

local function clock() return uv.hrtime() * 1e-9 end

local function absolute(p)
    if p:sub(1, 1) == "/" then return p end
    return (os.getenv("PWD") or ".") .. "/" .. p
end

-- The listing's entries of the selected paths: { path = entry }.
local function index(entries)
    local by, paths = {}, {}
    for _, e in ipairs(entries) do
        if e.type ~= "directory" and cache.safe_relative(e.path) then
            by[e.path] = e
            paths[#paths + 1] = e.path
        end
    end
    table.sort(paths)
    return by, paths
end

-- The expected SHA-256 of an entry: its LFS object id (a sha256 for LFS
-- files); nil for plain git files, whose id is a SHA-1 of the git blob.
local function lfs_sha256(e)
    local lfs = type(e) == "table" and type(e.lfs) == "table" and e.lfs or nil
    local oid = lfs and (lfs.sha256 or lfs.oid)
    if type(oid) == "string" then
        oid = oid:gsub("^sha256:", ""):lower()
        if #oid == 64 and oid:match("^%x+$") then return oid end
    end
end

-- Downloads blob (the file at meta.url) under its lock, verifying it
-- against want. Returns the final download event's facts, or nil, a
-- message, and what to do: "stop", "cancelled", or "resolve" (the file
-- changed, or the CDN's signed link expired: ask the hub again).
local function download_blob(client, o, ui, path, meta, want, blob)
    local t0 = clock()
    local final, err = download.run({
        url = meta.url, path = blob .. ".incomplete", size = meta.size, sha256 = want,
        headers = client:headers(meta.url), connections = o.connections, chunk = o.chunk,
        stall = o.stall, retries = o.retries,
    }, ui.event)
    if not final then return nil, err, "stop" end
    if final.kind == "done" then
        local renamed, rerr = os.rename(blob .. ".incomplete", blob)
        if not renamed then return nil, "cannot move the file into the cache: " .. rerr, "stop" end
        return { sha256 = final.sha256, received = final.received, resumed = final.resumed, seconds = clock() - t0 }
    end
    if final.reason == "digest" then
        return nil, string.format("%s: %s; the file was deleted", path, final.message), "stop"
    elseif final.reason == "cancelled" then
        return nil, "interrupted; run the same command again to resume", "cancelled"
    end
    -- A 403/401 from a host other than the hub's: the CDN's signed link
    -- expired, and the hub gives a new one.
    local cdn = api.host_of(meta.url) ~= api.host_of(client.endpoint)
    if final.reason == "changed" or (final.reason == "http" and cdn and
            (final.http_status == 403 or final.http_status == 401)) then
        return nil, final.message, "resolve"
    end
    return nil, string.format("%s: %s%s", path, final.message, final.done > 0 and
        " (what arrived is kept: run the same command again to resume)" or ""), "stop"
end

-- Puts one file of the repository into the cache (unless there) and links
-- its snapshot; returns its record, or nil, a message and a kind.
local function fetch_file(client, o, ui, path, entry, index_no, count)
    local last
    for attempt = 1, RESOLVES do
        if attempt > 1 then
            -- The file changed since the listing: its digest too.
            local entries, terr = client:tree(o.repo, o.revision)
            if not entries then return nil, terr end
            entry = index(entries)[path]
            if not entry then return nil, path .. ": no longer in the repository" end
        end
        local meta, err = client:head(o.repo, o.revision, path)
        if not meta then return nil, err end
        local want = lfs_sha256(entry)
        -- The listing and the file disagree when the repository changed
        -- between the two requests: ask again.
        if not (want and #meta.etag == 64 and meta.etag:lower() ~= want) then
            local record = { path = path, commit = meta.commit, etag = meta.etag, size = meta.size,
                             expected_sha256 = want }
            local ok, werr = cache.mkdir(cache.repo_dir(o.repo) .. "/blobs")
            if not ok then return nil, werr end
            cache.tag()
            ok, werr = cache.write_ref(o.repo, o.revision, meta.commit)
            if not ok then return nil, "cannot write the ref: " .. tostring(werr) end
            local blob = cache.blob(o.repo, meta.etag)
            local release, lerr = cache.lock(o.repo, meta.etag, function()
                ui.line(string.format("pull: %s: another process is downloading it; waiting", path))
            end)
            if not release then return nil, lerr end
            local st = uv.fs_stat(blob)
            local got, derr, kind
            if st and st.size == meta.size and not o.force then
                record.cached = true
                ui.cached(path, meta.size)
            else
                ui.start(path, meta.size, index_no, count)
                got, derr, kind = download_blob(client, o, ui, path, meta, want, blob)
                if got then
                    for k, v in pairs(got) do record[k] = v end
                    ui.finish({ bytes = got.received, seconds = got.seconds, resumed = got.resumed,
                                verified = want ~= nil })
                else
                    ui.abort()
                end
            end
            release()
            if kind == "resolve" then
                ui.line(string.format("pull: %s: %s; asking the hub again", path, derr))
                last = derr
            elseif derr then
                return nil, derr, kind
            else
                local linked, lnerr = cache.link(o.repo, meta.commit, path, meta.etag)
                if not linked then return nil, lnerr end
                record.local_path = absolute(linked)
                record.blob = absolute(blob)
                if record.sha256 then
                    checksum.store(record.local_path, record.sha256, { beside = false })
                else
                    local hex, fresh = checksum.recorded(record.local_path)
                    if fresh then record.sha256 = hex end
                end
                return record
            end
        end
    end
    return nil, string.format("%s: the file kept changing on the hub%s", path, last and (" (" .. last .. ")") or "")
end

-- Puts the file at dest: a hard link to the blob when they share a file
-- system (no copy, no extra space), else a copy; the digest goes beside it.
local function place(src, dest, sha256)
    local real = uv.fs_realpath(src) or src
    local st, dst = uv.fs_stat(real), uv.fs_stat(dest)
    if dst and st and dst.ino == st.ino and dst.dev == st.dev then
        if sha256 then checksum.store(dest, sha256) end
        return true
    end
    local dir = dest:match("^(.*)/[^/]*$")
    if dir and dir ~= "" then
        local ok, err = cache.mkdir(dir)
        if not ok then return nil, err end
    end
    local tmp = dest .. ".apr-tmp"
    os.remove(tmp)
    local ok = uv.fs_link(real, tmp)
    if not ok then
        local copied, cerr = uv.fs_copyfile(real, tmp, { ficlone = true })
        if not copied then
            os.remove(tmp)
            return nil, "cannot write " .. dest .. ": " .. tostring(cerr)
        end
    end
    local renamed, rerr = os.rename(tmp, dest)
    if not renamed then
        os.remove(tmp)
        return nil, "cannot write " .. dest .. ": " .. tostring(rerr)
    end
    if sha256 then checksum.store(dest, sha256) end
    return true
end

-- Where --output puts each file: PATH itself for one file, PATH/<name> when
-- PATH is a folder (or ends in /), which a split set needs.
local function outputs(output, recs)
    local st = uv.fs_stat(output)
    local is_dir = (st and st.type == "directory") or output:sub(-1) == "/"
    if #recs > 1 and not is_dir then
        if st then return nil, "--output must be a folder for a split model (" .. #recs .. " files)" end
        is_dir = true
    end
    local out = {}
    for i, r in ipairs(recs) do
        out[i] = is_dir and (output:gsub("/+$", "") .. "/" .. r.path:match("([^/]+)$")) or output
    end
    return out
end

-- pull(o, ui) -> summary, or nil and a message.
-- o: repo, revision, quant, file, endpoint, connections, chunk, stall,
-- retries, force, output. ui: hub/progress.lua's.
function M.pull(o, ui)
    if not cache.safe_relative(o.revision) then return nil, "not a revision: " .. tostring(o.revision) end
    if o.file and not cache.safe_relative(o.file) then return nil, "not a file name: " .. o.file end
    local summary = { repo = o.repo, revision = o.revision, cache = absolute(cache.dir()), files = {} }
    local recs
    if api.offline() then
        -- No network at all: the cache has it, or this fails.
        local ref = { repo = o.repo, rev = o.revision, quant = o.quant, file = o.file,
                      text = o.repo .. (o.quant and (":" .. o.quant) or o.file and (":" .. o.file) or "") }
        local path, info = ref_mod.find(ref)
        if not path then return nil, "HF_HUB_OFFLINE is set and " .. info end
        summary.commit, summary.offline = info.commit, true
        recs = {}
        for i, p in ipairs(info.parts) do
            local lp = absolute(cache.snapshot_file(o.repo, info.commit, p))
            local st = uv.fs_stat(lp)
            recs[i] = { path = p, commit = info.commit, cached = true, local_path = lp, size = st and st.size,
                        sha256 = checksum.recorded(lp) }
            ui.cached(p, st and st.size or 0)
        end
    else
        local client = api.new({ endpoint = o.endpoint, retries = o.retries })
        summary.endpoint = client.endpoint
        local entries, err = client:tree(o.repo, o.revision)
        if not entries then return nil, err end
        local by, paths = index(entries)
        local parts, serr = files.select(paths, { quant = o.quant, file = o.file })
        if not parts then return nil, o.repo .. ": " .. serr end
        recs = {}
        for i, p in ipairs(parts) do
            local rec, ferr, kind = fetch_file(client, o, ui, p, by[p], i, #parts)
            if not rec then return nil, ferr, kind end
            recs[i] = rec
            summary.commit = summary.commit or rec.commit
        end
    end
    summary.files = recs
    summary.path = recs[1].local_path
    if o.output then
        local dests, err = outputs(o.output, recs)
        if not dests then return nil, err end
        for i, r in ipairs(recs) do
            local ok, perr = place(r.local_path, dests[i], r.sha256)
            if not ok then return nil, perr end
            r.output = absolute(dests[i])
        end
        summary.path = recs[1].output
    end
    return summary
end

return M
