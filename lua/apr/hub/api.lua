-- hub/api.lua — the Hugging Face Hub's HTTP protocol, the part downloads
-- use, spoken as huggingface_hub speaks it:
--
--   GET  {endpoint}/api/models/{repo}/tree/{rev}?recursive=true
--        a JSON array of {type, oid, size, path, lfs = {oid (sha256), size}},
--        continued through the `Link: <url>; rel="next"` header.
--   HEAD {endpoint}/{repo}/resolve/{rev}/{path}
--        relative redirects (a renamed repository) are followed; an
--        absolute one is the file's location on the CDN and is not. The
--        answer's X-Repo-Commit is the commit, X-Linked-Etag (else ETag)
--        the blob's name, X-Linked-Size (else Content-Length) its size.
--
-- Requests carry `Authorization: Bearer $HF_TOKEN` (or the token file
-- huggingface-cli login writes) to the hub's host only; 429, 5xx and
-- transport failures are retried with backoff, Retry-After honoured.
local uv = require "luv"
local core = require "apr.core"
local cjson = require "cjson"
local C, ffi = core.C, core.ffi

local M = {}

local DEFAULT_ENDPOINT = "https://huggingface.co"
local MAX_JSON = 64 * 2 ^ 20   -- one page of a listing; the hub sends ~1000 entries
local TIMEOUT = 30             -- seconds for one metadata request
local ATTEMPTS = 5             -- at most, for one metadata request

local function env(name)
    local v = os.getenv(name)
    if v and v ~= "" then return v end
end

local TRUE = { ["1"] = true, ON = true, YES = true, TRUE = true }

-- HF_HUB_OFFLINE=1 (or TRANSFORMERS_OFFLINE): no network at all.
function M.offline()
    local v = env("HF_HUB_OFFLINE") or env("TRANSFORMERS_OFFLINE")
    return v ~= nil and TRUE[v:upper()] == true
end

function M.endpoint(given)
    return ((given or env("HF_ENDPOINT") or DEFAULT_ENDPOINT):gsub("/+$", ""))
end

-- The token: $HF_TOKEN (or the older $HUGGING_FACE_HUB_TOKEN), else the
-- file `hf auth login` writes ($HF_TOKEN_PATH, default $HF_HOME/token).
function M.token()
    local t = env("HF_TOKEN") or env("HUGGING_FACE_HUB_TOKEN")
    if not t then
        local home = env("HF_HOME") or ((env("XDG_CACHE_HOME") or ((env("HOME") or "/tmp") .. "/.cache")) .. "/huggingface")
        local f = io.open(env("HF_TOKEN_PATH") or (home .. "/token"), "rb")
        if f then
            t = f:read("*a")
            f:close()
        end
    end
    t = t and t:match("^%s*(.-)%s*$")
    if t and t ~= "" then return t end
end

-- Percent-encodes one path segment (RFC 3986 unreserved kept).
local function quote(s)
    return (s:gsub("[^%w%-%._~]", function(ch) return string.format("%%%02X", ch:byte()) end))
end

local function quote_path(p)
    local parts = {}
    for seg in p:gmatch("[^/]+") do parts[#parts + 1] = quote(seg) end
    return table.concat(parts, "/")
end

local function host_of(url) return url:match("^%a+://([^/?#]+)") end

-- Header lines -> { lower-case name = value }.
local function parse_headers(text)
    local h = {}
    for line in (text or ""):gmatch("[^\r\n]+") do
        local k, v = line:match("^([^:]+):%s*(.-)%s*$")
        if k then h[k:lower()] = v end
    end
    return h
end

local result = ffi.new("apr_fetch_result")

local Client = {}
Client.__index = Client

-- new({ endpoint = URL, token = T|false, retries = N }) -> client; a
-- metadata request is retried min(N, 4) times.
function M.new(opts)
    opts = opts or {}
    local token = opts.token
    if token == nil then token = M.token() end
    local attempts = math.min(opts.retries or ATTEMPTS - 1, ATTEMPTS - 1) + 1
    return setmetatable({ endpoint = M.endpoint(opts.endpoint), token = token or nil, attempts = attempts }, Client)
end

-- The headers for a request to url: the token goes to the hub's host only.
function Client:headers(url)
    if self.token and host_of(url) == host_of(self.endpoint) then
        return { "Authorization: Bearer " .. self.token }
    end
    return {}
end

-- One request with retries: { status, headers, body, url } or nil, message.
function Client:request(method, url, follow)
    local last
    local attempts = self.attempts or ATTEMPTS
    for attempt = 1, attempts do
        local status = C.apr_fetch_request(method, url, table.concat(self:headers(url), "\n"), follow and 1 or 0,
            MAX_JSON, TIMEOUT, result)
        local wait
        if status == 0 then
            local r = {
                status = result.http_status, headers = parse_headers(ffi.string(result.headers)),
                body = ffi.string(result.body, result.body_len), url = ffi.string(result.url),
            }
            C.apr_fetch_result_free(result)
            local s = r.status
            if not (s == 429 or s == 408 or s >= 500) then return r end
            last = string.format("HTTP %d from %s", s, url)
            wait = tonumber(r.headers["retry-after"])
        else
            local _, msg = core.failure(status)
            if status == C.APR_ERR_CANCELLED or status == C.APR_ERR_RANGE then return nil, msg end
            last = msg
        end
        if attempt == attempts then break end
        wait = math.min(wait or (0.5 * 2 ^ (attempt - 1)), 60)
        uv.sleep(math.floor(wait * 1000))
        if C.apr_interrupted() ~= 0 then return nil, "interrupted" end
    end
    return nil, last .. string.format(" (gave up after %d attempts)", attempts)
end

-- The message for an error answer about repo: the hub's X-Error-Code says
-- which of repository, revision and file is missing, or why access failed.
local function explain(r, repo, rev, path)
    local code = r.headers["x-error-code"]
    local what = repo .. (path and (" " .. path) or "")
    if code == "GatedRepo" or (r.status == 403) then
        return string.format("%s: access to this gated model is restricted: accept its terms on the hub and " ..
            "set HF_TOKEN (HTTP %d)", repo, r.status)
    elseif code == "RevisionNotFound" then
        return string.format("%s: no revision '%s' (HTTP %d)", repo, rev, r.status)
    elseif code == "EntryNotFound" then
        return string.format("%s: no file %s at revision %s (HTTP %d)", repo, path or "?", rev, r.status)
    elseif code == "RepoNotFound" or r.status == 401 or r.status == 404 then
        return string.format("%s: repository not found, or private (set HF_TOKEN for a private one) (HTTP %d)",
            repo, r.status)
    end
    return string.format("%s: HTTP %d", what, r.status)
end

-- tree(repo, rev) -> every entry of the repository at rev (files and
-- folders, recursively), or nil and a message.
function Client:tree(repo, rev)
    local url = string.format("%s/api/models/%s/tree/%s?recursive=true", self.endpoint, quote_path(repo), quote(rev))
    local all, pages = {}, 0
    while url do
        local r, err = self:request("GET", url, true)
        if not r then return nil, err end
        if r.status ~= 200 then return nil, explain(r, repo, rev) end
        local ok, page = pcall(cjson.decode, r.body)
        if not ok or type(page) ~= "table" then return nil, repo .. ": the hub's file listing is not a JSON array" end
        for _, e in ipairs(page) do
            if type(e) == "table" and type(e.path) == "string" then all[#all + 1] = e end
        end
        pages = pages + 1
        if pages > 10000 then return nil, repo .. ": the listing does not end" end
        url = (r.headers["link"] or ""):match('<([^>]+)>%s*;%s*rel="?next"?')
    end
    return all
end

local function normalize_etag(e)
    if not e then return nil end
    return (e:gsub("^W/", ""):gsub('^"', ""):gsub('"$', ""))
end

-- head(repo, rev, path) -> { commit, etag, size, url } where url is where
-- the bytes are (the CDN location, or the resolve URL itself), or nil and a
-- message.
function Client:head(repo, rev, path)
    local url = string.format("%s/%s/resolve/%s/%s", self.endpoint, quote_path(repo), quote(rev), quote_path(path))
    for _ = 1, 10 do
        local r, err = self:request("HEAD", url, false)
        if not r then return nil, err end
        local loc = r.headers["location"]
        if r.status >= 300 and r.status < 400 and loc and loc:sub(1, 1) == "/" then
            url = url:match("^(%a+://[^/]+)") .. loc   -- a renamed repository
        elseif r.status >= 400 then
            return nil, explain(r, repo, rev, path)
        else
            local meta = {
                commit = r.headers["x-repo-commit"],
                etag = normalize_etag(r.headers["x-linked-etag"] or r.headers["etag"]),
                size = tonumber(r.headers["x-linked-size"] or (r.status < 300 and r.headers["content-length"]) or ""),
                url = (r.status >= 300 and loc) or url,
            }
            if not meta.commit or not meta.commit:match("^%x+$") or #meta.commit > 64 then
                return nil, string.format("%s: the hub's answer for %s has no X-Repo-Commit", repo, path)
            end
            if not meta.etag or not meta.etag:match("^[%w%-_][%w%-_.]*$") or #meta.etag > 128 then
                return nil, string.format("%s: the hub's answer for %s has no usable ETag", repo, path)
            end
            if not meta.size or meta.size < 0 or meta.size ~= math.floor(meta.size) or meta.size >= 2 ^ 53 then
                return nil, string.format("%s: the hub's answer for %s gives no usable size", repo, path)
            end
            return meta
        end
    end
    return nil, repo .. ": too many redirects for " .. path
end

M.quote = quote
M.quote_path = quote_path
M.host_of = host_of

return M
