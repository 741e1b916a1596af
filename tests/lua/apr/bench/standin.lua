-- standin.lua — what the stand-ins for llama-server and Ollama share
-- (standin_llama_server.lua, standin_ollama.lua): their behaviour from the
-- environment, waiting inside a request handler, the slots that limit how
-- many requests decode at once, and the token schedule.
--
-- Environment (all optional):
--   STANDIN_LOAD_MS            time before the model is "loaded" (llama-server: /health 503 until then)
--   STANDIN_TTFT_MS            fixed time before the first token
--   STANDIN_PROMPT_US_PER_TOKEN  prefill time per prompt token (microseconds)
--   STANDIN_TOKENS_PER_S       decode rate of one stream
--   STANDIN_JITTER             relative spread of every delay (uniform, +-)
--   STANDIN_SEED               the spread's random seed
--   STANDIN_GPU_BYTES          with FAKE_NVML_PROCESSES: the stand-in writes "PID BYTES" there
--                              (tests/fixtures/nvml/fake_nvml.c reads it), posing as a GPU process
--   STANDIN_GPU_FOREIGN_PID    ... under this pid instead of its own (another PID namespace)
--   STANDIN_FAIL_AFTER         requests answered before the process exits (a crash)
--   STANDIN_ONLY_API           "completions": the chat endpoints answer 404 (llama-server's
--                              /v1/chat/completions, Ollama's /api/chat)
local uv = require "luv"
local http = require "apr.server.http"

local M = {}

local function env_number(name, default)
    local v = tonumber(os.getenv(name) or "")
    return v or default
end

M.cfg = {
    load_ms = env_number("STANDIN_LOAD_MS", 100),
    ttft_ms = env_number("STANDIN_TTFT_MS", 20),
    prompt_us = env_number("STANDIN_PROMPT_US_PER_TOKEN", 50),
    tps = env_number("STANDIN_TOKENS_PER_S", 200),
    jitter = env_number("STANDIN_JITTER", 0.05),
    fail_after = env_number("STANDIN_FAIL_AFTER", nil),
    gpu_bytes = env_number("STANDIN_GPU_BYTES", nil),
    only_api = os.getenv("STANDIN_ONLY_API"),
}
math.randomseed(env_number("STANDIN_SEED", 1))

function M.now() return uv.hrtime() * 1e-9 end

-- Sleeps the calling handler for ms (with the configured jitter).
function M.sleep(ms, no_jitter)
    if not no_jitter and M.cfg.jitter > 0 then ms = ms * (1 + M.cfg.jitter * (2 * math.random() - 1)) end
    if ms <= 0 then return end
    http.await(function(cb)
        local t = uv.new_timer()
        t:start(math.max(0, math.floor(ms + 0.5)), 0, function() t:close() cb() end)
    end)
end

-- A rough token count of text, as a byte-level BPE gives for English and
-- code (about four bytes a token).
function M.count_tokens(text) return math.max(1, math.ceil(#text / 4)) end

-- Slots: acquire() waits for a free one; release() hands it on.
function M.slots(n)
    local s = { free = n, waiting = {} }
    function s.acquire()
        if s.free > 0 then s.free = s.free - 1 return end
        http.await(function(cb) s.waiting[#s.waiting + 1] = cb end)
    end
    function s.release()
        local nxt = table.remove(s.waiting, 1)
        if nxt then nxt() else s.free = s.free + 1 end
    end
    return s
end

-- Decodes n tokens for a request, calling emit(i) per token at the
-- configured rate (measured from the first, so timer slack does not add up).
function M.decode(n, emit)
    local start = M.now()
    for i = 1, n do
        if i > 1 then
            local due = start + (i - 1) / M.cfg.tps
            M.sleep((due - M.now()) * 1000, true)
        end
        if emit(i) == false then return false end
    end
    return true
end

-- Prefill of p prompt tokens: the fixed time to first token plus p times
-- the per-token time.
function M.prefill(p)
    M.sleep(M.cfg.ttft_ms + p * M.cfg.prompt_us / 1000)
end

-- Posing as a GPU process for the fake NVML library.
function M.register_gpu_process()
    local path = os.getenv("FAKE_NVML_PROCESSES")
    if not path or not M.cfg.gpu_bytes then return end
    local f = io.open(path, "a")
    if f then
        -- STANDIN_GPU_FOREIGN_PID: listed under another pid, as the driver
        -- lists a process of another PID namespace.
        f:write(string.format("%d %d\n", tonumber(os.getenv("STANDIN_GPU_FOREIGN_PID") or "") or uv.os_getpid(), M.cfg.gpu_bytes))
        f:close()
    end
end

local answered = 0
-- Counts an answered request; exits the process after STANDIN_FAIL_AFTER.
function M.count_request()
    answered = answered + 1
    if M.cfg.fail_after and answered > M.cfg.fail_after then
        io.stderr:write("stand-in: crashing after ", M.cfg.fail_after, " requests (STANDIN_FAIL_AFTER)\n")
        os.exit(3)
    end
end

-- Runs the loop until SIGTERM/SIGINT.
function M.serve_forever(srv)
    local function stop()
        srv:close()
        uv.stop()
    end
    uv.new_signal():start("sigterm", stop)
    uv.new_signal():start("sigint", stop)
    uv.run("default")
    return 0
end

return M
