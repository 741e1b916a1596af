-- zram_swap.lua — what the KV swap to a zram pool buys and costs, measured
-- in-process on the engine (apr.engine: the loop `apr serve` runs), each
-- figure beside its baseline from the same run, a table last.
--
--   apr run bench/zram_swap.lua [--model M.gguf] [--gpu] [--vram-budget 24G] [--mode ttft,held,streams]
--       [--history 1024,2048] [--reps 2] [--conv-tokens 256] [--conversations 16] [--held-ctx 1024]
--       [--streams 16] [--tokens 64] [--algo lz4] [--ratio 2.5] [--json]
--
-- ttft: the second turn of a conversation with a history of N tokens,
--   after another conversation as long went through the engine (its blocks
--   evicted the first's): time to first token with the pool (the first's
--   blocks come back from it) against without (recomputed), and a warm
--   turn (no other conversation in between: the device's prefix cache) for
--   scale. The context holds one conversation and a little more.
-- held: conversations held at once. --conversations conversations of
--   --conv-tokens tokens are opened one after another in a cache of
--   --held-ctx tokens (or what --vram-budget leaves), then each is
--   continued, newest first; one counts as held when its continuation
--   finds all of its history cached (on the device or in the pool), so
--   nothing but the new tokens is computed. With the pool and without.
-- streams: --streams streams of --tokens tokens: their aggregate tokens/s
--   with the pool idle; with one more sequence resuming, round robin,
--   conversations that do not fit the device together (so every resume
--   restores blocks from the pool and evicts others to it: swapping
--   active); and with that sequence resuming one conversation that stays
--   on the device (the same requests, no swap traffic): the last two set
--   apart the swap's cost from the resumes' own compute.
local apr = require "apr"
local engine = require "apr.engine"
local json = require "apr.json"
local hrtime = require("luv").hrtime

local function now() return hrtime() * 1e-9 end

------------------------------------------------------------------ options

local opts = { mode = "ttft,held,streams", history = "1024", reps = 2, conv_tokens = 256, conversations = 16,
               held_ctx = 1024, streams = 16, tokens = 64, algo = "lz4", ratio = 2.5 }
do
    local i = 1
    while i <= #arg do
        local k = arg[i]:match("^%-%-(.+)$")
        if not k then error("unexpected argument " .. arg[i]) end
        k = k:gsub("-", "_")
        if k == "json" or k == "gpu" then
            opts[k] = true
        else
            i = i + 1
            opts[k] = tonumber(arg[i]) or arg[i] or error("--" .. k .. " needs a value")
        end
        i = i + 1
    end
end
local function list(s)
    local t = {}
    for x in tostring(s):gmatch("[^,]+") do t[#t + 1] = tonumber(x) or x end
    return t
end
local function size(s)
    if not s then return nil end
    local n, u = tostring(s):match("^([%d%.]+)([KMGkmg]?)")
    return math.floor(tonumber(n) * ({ [""] = 1, k = 2 ^ 10, m = 2 ^ 20, g = 2 ^ 30 })[u:lower()])
end
local modes = {}
for _, m in ipairs(list(opts.mode)) do modes[m] = true end

local model_path = opts.model or require("apr.model").default_model_path()
local t_load = now()
local model = assert(apr.load(model_path, { device = opts.gpu and "cuda" or "cpu",
                                            vram_budget = size(opts.vram_budget) }))
io.stderr:write(string.format("loaded %s on %s in %.1f s\n", model_path, model.info.device, now() - t_load))
local n_vocab = model.info.n_vocab

-- Token ids of a synthetic conversation: deterministic, away from the
-- special tokens (TTFT does not depend on which ids they are).
local function tokens(seed, n)
    local t, x = {}, seed * 7919 + 17
    for i = 1, n do
        x = (x * 1103515245 + 12345) % 2147483648
        t[i] = 100 + math.floor(x / 65536) % (math.min(n_vocab, 150000) - 200)
    end
    return t
end
local function concat(a, b)
    local t = {}
    for i = 1, #a do t[i] = a[i] end
    for i = 1, #b do t[#a + i] = b[i] end
    return t
end

local function new_engine(params)
    local e, err = engine.new(model, params)
    if not e then error("engine: " .. tostring(err), 0) end
    return e
end

-- One request, to its end: the summary (timings.prompt_s is the time to
-- first token; n_cached the prompt tokens not computed) and the ids.
local function turn(eng, ids, max_tokens)
    local s = {}
    local out = {}
    for t in assert(eng:generate(ids, { max_tokens = max_tokens, temperature = 0, ignore_eos = true }, s)) do
        if t.id then out[#out + 1] = t.id end
    end
    return s, out
end

-- the median (apr.bench.stats), NaN of nothing
local function median(t) return require("apr.bench.stats").median(t) or 0 / 0 end

local zram_opts = { zram_ratio = opts.ratio, zram_algo = opts.algo }
local results = { model = model_path, device = model.info.device }
local lines = {}

------------------------------------------------------------------ ttft

if modes.ttft then
    results.ttft = {}
    for _, h in ipairs(list(opts.history)) do
        local row = { history = h }
        for _, with in ipairs { false, true } do
            local params = { parallel = 1, ctx = h + 128, batch = 512 }
            if with then for k, v in pairs(zram_opts) do params[k] = v end end
            local eng = new_engine(params)
            local warm, swapped, cached = {}, {}, {}
            for r = 1, opts.reps do
                local a = tokens(1000 * r + h, h)
                -- a warm turn: the first turn, then its continuation at once
                local _, answer = turn(eng, a, 8)
                local a2 = concat(concat(a, answer), tokens(7 + r, 32))
                local s = turn(eng, a2, 1)
                warm[r] = s.timings.prompt_s
                -- another conversation as long evicts it; then its next turn
                local b = tokens(2000 * r + h, h)
                turn(eng, b, 8)
                local a3 = concat(a2, tokens(9 + r, 32))
                s = turn(eng, a3, 1)
                swapped[r], cached[r] = s.timings.prompt_s, s.n_cached / #a3
            end
            local z = eng:zram_stats()
            eng:free()
            collectgarbage()
            if with then
                row.zram_s, row.zram_cached, row.blocks_in = median(swapped), median(cached), z.swap.blocks_in
                row.pool_ratio = z.pool.ratio
            else
                row.recompute_s, row.recompute_cached, row.warm_s = median(swapped), median(cached), median(warm)
            end
        end
        row.speedup = row.recompute_s / row.zram_s
        results.ttft[#results.ttft + 1] = row
        lines[#lines + 1] = string.format("second turn, %5d-token history: TTFT recomputed %8.3f s (%.0f%% cached), " ..
            "from the pool %8.3f s (%.0f%% cached, %d blocks back): %.1fx; warm (on the device) %.3f s", h,
            row.recompute_s, 100 * row.recompute_cached, row.zram_s, 100 * row.zram_cached, row.blocks_in,
            row.speedup, row.warm_s)
    end
end

------------------------------------------------------------------ held

if modes.held then
    results.held = {}
    local n, len = opts.conversations, opts.conv_tokens
    for _, with in ipairs { false, true } do
        -- under a budget the cache gets what the budget leaves (ctx 0)
        local params = { parallel = 1, ctx = opts.vram_budget and 0 or opts.held_ctx, batch = 512 }
        if with then for k, v in pairs(zram_opts) do params[k] = v end end
        local eng = new_engine(params)
        local convs = {}
        for c = 1, n do
            local ids = tokens(5000 + c, len)
            local _, answer = turn(eng, ids, 8)
            convs[c] = concat(ids, answer)
        end
        local held = 0
        for c = n, 1, -1 do
            local next_turn = concat(convs[c], tokens(31 + c, 16))
            local s = turn(eng, next_turn, 1)
            -- all of the history (the last token of a turn is decoded again)
            if s.n_cached >= #convs[c] - 1 then held = held + 1 end
        end
        local st, z = eng:stats(), eng:zram_stats()
        eng:free()
        collectgarbage()
        local r = { zram = with, held = held, of = n, ctx = st.n_ctx, conv_tokens = len }
        if z then r.pool_mib, r.pool_ratio = z.pool.max_bytes / 2 ^ 20, z.pool.ratio end
        results.held[#results.held + 1] = r
    end
    local a, b = results.held[1], results.held[2]
    lines[#lines + 1] = string.format("conversations of %d tokens held at once in a %d-token cache: %d of %d without " ..
        "the pool, %d with (pool of %.0f MiB, ratio %.2f): %.1fx", len, a.ctx, a.held, n, b.held, b.pool_mib or 0,
        b.pool_ratio or 0, b.held / math.max(a.held, 1))
end

------------------------------------------------------------------ streams

if modes.streams then
    local ns, nt = opts.streams, opts.tokens
    -- room for the streams and two churn conversations, not for all of them
    local churn_len, n_churn = opts.conv_tokens, 6
    local ctx = ns * (32 + nt + 32) + 2 * (churn_len + 64)
    local params = { parallel = ns + 1, ctx = ctx, batch = 512 }
    for k, v in pairs(zram_opts) do params[k] = v end
    local eng = new_engine(params)
    local convs = {}
    for c = 1, n_churn do convs[c] = tokens(9000 + c, churn_len) end
    for c = 1, n_churn do turn(eng, convs[c], 1) end  -- into the cache, then the pool

    local function run_streams(active, n_conv)
        local z0 = eng:zram_stats()
        local gens, done, ntok = {}, 0, 0
        local t0 = now()
        for i = 1, ns do
            gens[i] = assert(eng:start(tokens(300 + i, 32), { max_tokens = nt, temperature = 0, ignore_eos = true },
                function(p)
                    if p.token then ntok = ntok + 1 end
                    if p.finish_reason then done = done + 1 end
                end))
        end
        local churn, k = nil, 0
        while done < ns do
            if active and (not churn or churn.done) then
                k = k % n_conv + 1
                churn = assert(eng:start(concat(convs[k], tokens(k, 8)), { max_tokens = 1, temperature = 0,
                                                                           ignore_eos = true }, function() end))
            end
            eng:wait(50)
            eng:drain()
        end
        local dt = now() - t0
        while churn and not churn.done do
            eng:wait(50)
            eng:drain()
        end
        local z1 = eng:zram_stats()
        return ntok / dt, z1.swap.blocks_in - z0.swap.blocks_in, z1.swap.blocks_out - z0.swap.blocks_out
    end
    local idle, resident, active = {}, {}, {}
    local moved_in, moved_out, resident_in = 0, 0, 0
    for r = 1, opts.reps do
        idle[r] = run_streams(false, 1)
        local tps, i, o = run_streams(true, 1)
        resident[r], resident_in = tps, resident_in + i
        tps, i, o = run_streams(true, n_churn)
        active[r], moved_in, moved_out = tps, moved_in + i, moved_out + o
    end
    eng:free()
    collectgarbage()
    results.streams = { streams = ns, tokens = nt, idle_tps = median(idle), resident_tps = median(resident),
                        active_tps = median(active), blocks_in = moved_in, blocks_out = moved_out,
                        resident_blocks_in = resident_in }
    local s = results.streams
    lines[#lines + 1] = string.format("%d streams of %d tokens: %.1f tok/s with the pool idle; beside resumes " ..
        "of conversations: %.1f when they stay on the device (%d blocks in), %.1f when they swap (%d blocks in, " ..
        "%d out): swapping %.2fx of resident, %.2fx of idle", ns, nt, s.idle_tps, s.resident_tps, resident_in,
        s.active_tps, moved_in, moved_out, s.active_tps / s.resident_tps, s.active_tps / s.idle_tps)
end

------------------------------------------------------------------ table

print(string.format("%s on %s, pool %s at %.1fx the KV cache's bytes:", model_path:match("[^/]+$"),
    model.info.device, opts.algo, opts.ratio))
for _, l in ipairs(lines) do print("  " .. l) end
if opts.json then print(json.encode(results)) end
