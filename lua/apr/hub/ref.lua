-- hub/ref.lua — model references, ORG/REPO[@REV][:QUANT|:FILE.gguf], and
-- their files in the hub cache, found without the network.
--
--   bartowski/Qwen2.5-Coder-32B-Instruct-GGUF:Q4_K_M
--   Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF@main:q8_0
--   hf.co/bartowski/...:Q4_K_M          (Ollama's spelling)
--   org/repo:model-q4_k_m.gguf          (a file by name)
--   org/repo                            (a repository holding one model)
--
-- A reference resolves to the snapshot path of its file (a split set: its
-- first part) in the cache that `apr pull` and huggingface_hub share: the
-- commit refs/<REV> names (else the newest snapshot), the file picked by
-- the same rules as apr pull uses on the hub's listing (hub/files.lua).
local cache = require "apr.hub.cache"
local files = require "apr.hub.files"

local M = {}

local NAME = "[%w][%w%._%-]*"

-- parse(text) -> { repo, rev, quant, file } or nil when text is not a
-- reference.
function M.parse(text)
    if type(text) ~= "string" then return nil end
    local s = text:gsub("^https?://", ""):gsub("^hf%.co/", ""):gsub("^huggingface%.co/", "")
    local repo, rest = s:match("^(" .. NAME .. "/" .. NAME .. ")(.*)$")
    if not repo or repo:find("%.%.") then return nil end
    local rev, sel = "main", nil
    local r, after = rest:match("^@([%w%._%-/]+)(.*)$")
    if r then rev, rest = r, after end
    if rest ~= "" then
        sel = rest:match("^:([^:]+)$")
        if not sel then return nil end
    end
    local ref = { repo = repo, rev = rev, text = text }
    if sel and sel:lower():match("%.gguf$") then ref.file = sel else ref.quant = sel end
    return ref
end

-- How to get a reference's file: the apr pull command line.
function M.pull_command(ref)
    local cmd = "apr pull " .. ref.repo
    if ref.quant then cmd = cmd .. " --quant " .. ref.quant end
    if ref.file then cmd = cmd .. " --file " .. ref.file end
    if ref.rev ~= "main" then cmd = cmd .. " --revision " .. ref.rev end
    return cmd
end

local function absolute(p)
    if p:sub(1, 1) == "/" then return p end
    return (os.getenv("PWD") or ".") .. "/" .. p
end

-- find(ref) -> path, { commit, parts } or nil and a message saying what
-- is missing and how to get it.
function M.find(ref)
    local function missing(why)
        return nil, string.format("%s is not in the Hugging Face cache (%s)%s; download it with: %s",
            ref.text, cache.dir(), why and (": " .. why) or "", M.pull_command(ref))
    end
    local commit = cache.read_ref(ref.repo, ref.rev)
    if not commit and ref.rev == "main" then commit = cache.snapshots(ref.repo)[1] end
    if not commit then return missing() end
    local listed = cache.snapshot_files(ref.repo, commit)
    if #listed == 0 then return missing() end
    local parts, err = files.select(listed, { quant = ref.quant, file = ref.file })
    if not parts then return missing(err) end
    return absolute(cache.snapshot_file(ref.repo, commit, parts[1])), { commit = commit, parts = parts }
end

return M
