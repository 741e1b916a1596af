-- bench/tokenizer.lua — how fast the tokenizer encodes source code.
--
--   ./apr run bench/tokenizer.lua [VOCAB.gguf] [--mb N] [--runs N]
--
-- Encodes N MB (default 1) of source code — this repository's C, Lua and
-- header files (not the generated Unicode tables, which are numbers), then
-- /usr/include's headers, concatenated up to that size —
-- with a real-size vocabulary: Qwen2's 151,936 tokens and 151,387 merges
-- (tests/fixtures/tokenizer/ggml-vocab-qwen2.gguf.zst, unless a GGUF is
-- given). The tokenizer runs on the calling thread only, so this is one
-- core. Prints the best of --runs (default 5) runs, in seconds and MB/s,
-- wall-clock and CPU time (on a shared machine the CPU time is the steadier
-- of the two); the target is under 0.5 s for 1 MB.
local T = require "apr.tokenizer"
local hrtime = require("luv").hrtime

local vocab, mb, runs
do
    local i = 1
    while i <= #arg do
        if arg[i] == "--mb" then mb = tonumber(arg[i + 1]); i = i + 2
        elseif arg[i] == "--runs" then runs = tonumber(arg[i + 1]); i = i + 2
        else vocab = arg[i]; i = i + 1 end
    end
end
mb, runs = mb or 1, runs or 5

local function lines_of(cmd)
    local p = assert(io.popen(cmd))
    local out = {}
    for line in p:lines() do out[#out + 1] = line end
    p:close()
    return out
end

-- The corpus, in a fixed order so every run measures the same text.
local function corpus(bytes)
    local files = lines_of("git ls-files 'runtime/*.c' 'runtime/*.h' 'lua/*.lua' 2>/dev/null | grep -v _tables | sort")
    for _, f in ipairs(lines_of("ls /usr/include/*.h 2>/dev/null | sort")) do files[#files + 1] = f end
    local parts, size = {}, 0
    for _, name in ipairs(files) do
        local f = io.open(name, "rb")
        if f then
            local s = f:read("*a")
            f:close()
            parts[#parts + 1] = s
            size = size + #s
            if size >= bytes then break end
        end
    end
    return table.concat(parts):sub(1, bytes)
end

local tmp
if not vocab then
    tmp = os.tmpname()
    assert(os.execute("zstd -q -d -f -o " .. tmp .. " tests/fixtures/tokenizer/ggml-vocab-qwen2.gguf.zst") == 0,
        "zstd failed")
    vocab = tmp
end
local t0 = hrtime()
local tok = assert(T.open(vocab))
local load_s = (hrtime() - t0) * 1e-9
if tmp then os.remove(tmp) end

local text = corpus(math.floor(mb * 1024 * 1024))
local best, best_cpu, n_ids = math.huge, math.huge, 0
for _ = 1, runs do
    collectgarbage()
    local start, cpu = hrtime(), os.clock()
    local ids = assert(tok:tokenize(text))
    local s = (hrtime() - start) * 1e-9
    best_cpu = math.min(best_cpu, os.clock() - cpu)
    if s < best then best, n_ids = s, #ids end
end
assert(tok:detokenize(tok:tokenize(text:sub(1, 65536))) == text:sub(1, 65536), "round trip failed")

print(string.format("tokenizer: vocabulary of %d tokens loaded in %.3f s", tok.n_vocab, load_s))
print(string.format("tokenizer: %d bytes of source -> %d tokens (%.2f bytes/token)", #text, n_ids, #text / n_ids))
print(string.format("tokenizer: best of %d runs %.3f s = %.2f MB/s on one core (CPU time %.3f s; target < 0.5 s per MB)",
    runs, best, #text / best / 1e6, best_cpu))
