-- serve_load.lua — `apr serve` measured the way a client sees it: streaming
-- requests over loopback HTTP, timed at the client.
--
--   apr run bench/serve_load.lua [--model MODEL.gguf] [--serve "--parallel 16"] [mode options]
--   apr run bench/serve_load.lua --url http://127.0.0.1:8080 [--api-key KEY] [mode options]
--
-- With --model (default: the built-in model) it starts `apr serve MODEL
-- --port 0 SERVE-ARGS` itself and stops it at the end; with --url it uses a
-- server already running.
--
-- --mode load (default): --clients 64 concurrent streaming clients send
--   --requests 20 chat requests each (keep-alive, --max-tokens 32); prints
--   failed requests (must be 0), p50/p99 time to first token and
--   inter-token latency, and tokens/s.
-- --mode gpu: the issue's GPU figures (run on the GPU machine with
--   --serve "--gpu --parallel 16 --ctx 32768"):
--   1. one stream of --tokens 128: inter-token latency p50 and p99 (target
--      p99 <= 1.5 x p50);
--   2. 16 concurrent streams of 128 tokens: aggregate tokens/s and its ratio
--      to one stream's (target >= 8x), median time to first token;
--   3. a 32-token prompt with max_tokens 1, 20 times: median time to the
--      first byte of the answer (target <= 33 ms). 32 tokens as the server
--      counts them (usage.prompt_tokens: the chat template's tokens
--      included), so the figure compares with an engine-level time to first
--      token of 32 tokens whatever the model's vocabulary: the same words
--      are 4x as many tokens under a synthetic model's byte-level one.
-- --mode kv: the KV cache shared across requests (issue 17; bench/kv_cache.sh
--   runs it on the GPU), a table last:
--   1. the next turn of a chat with a history of --history N[,N...] tokens:
--      time to first token when the server's prefix cache holds the
--      earlier turns, against a cold start of a conversation as long
--      (another system prompt: nothing to reuse); --reps conversations,
--      medians (target on the GPU: warm <= 0.01 x cold);
--   2. one request of a --long N token prompt beside 15 short streams of
--      --tokens tokens, all sent at once: none fails, and none waits for
--      another to finish (every short one has its first token before the
--      long one has its: the long prompt is prefilled in chunks beside
--      them);
--   3. 16 concurrent streams of --tokens tokens: aggregate tokens/s and
--      its ratio to one stream's.
--   Against llama-server (--url), give it -np and -c to match.
-- --json prints the figures as one JSON object on the last line too.
local uv = require "luv"
local json = require "apr.json"
local client = require "apr.bench.client"
local serve_proc = require "apr.bench.serve_proc"

local function now() return uv.hrtime() * 1e-9 end

------------------------------------------------------------------ options

local opts = { mode = "load", clients = 64, requests = 20, max_tokens = 32, tokens = 128, serve = "",
               history = "1024", long = 2048, reps = 2 }
local function usage(why)
    if why then io.stderr:write("serve_load: ", why, "\n") end
    io.stderr:write("usage: apr run bench/serve_load.lua [--model MODEL.gguf [--serve ARGS] | --url URL] " ..
                    "[--mode load|gpu|kv] [--clients N] [--requests N] [--max-tokens N] [--tokens N] " ..
                    "[--history N,N] [--long N] [--reps N] [--api-key KEY] [--json]\n")
    os.exit(2)
end
serve_proc.options(arg, opts, usage)
-- Without --model or --url: the built-in default model, as `apr serve` has.
if not opts.model and not opts.url then
    opts.model = require("apr.model").default_model_path()
    local f = io.open(opts.model, "rb")
    if not f then usage("no --model or --url given and the default model is not installed: run `make model`") end
    f:close()
end
if opts.mode ~= "load" and opts.mode ~= "gpu" and opts.mode ~= "kv" then usage("--mode must be load, gpu or kv") end

------------------------------------------------------------------ the server

local server_proc
local function start_server()
    local proc, _, port = serve_proc.start(opts.model, opts.serve)
    server_proc = proc
    return "127.0.0.1", port
end

-- A request the figures cannot do without failed: one line, the server
-- this started stopped, exit 1.
local function die(why)
    io.stderr:write("serve_load: ", why, "\n")
    if server_proc then server_proc:kill("sigterm") end
    os.exit(1)
end

local host, port
if opts.url then
    local u, why = client.parse_url(opts.url)
    if not u then usage(why) end
    host, port = u.host, u.port
else
    host, port = start_server()
end

------------------------------------------------------------------ a streaming client

-- The HTTP client of `apr bench` (lua/apr/bench/client.lua): one
-- connection per simulated client sends its requests one after another
-- (keep-alive); each result has t0 (request sent), t_first_byte, events
-- (arrival times of the pieces of text), t_first_event (of the stream's
-- first event, text or not), text (the pieces), usage, t_end and ok (a 200
-- that ended with its end marker).
local headers = opts.api_key and { Authorization = "Bearer " .. opts.api_key } or nil

local function chat_request(prompt, max_tokens, stream)
    return { messages = { { role = "user", content = prompt } }, max_tokens = max_tokens,
             temperature = 0, stream = stream, ignore_eos = true }
end

-- A streamed chat request, or { path =, body = } for a plain POST.
local function chat_body(prompt, max_tokens, stream)
    if stream then return { stream = { messages = { { role = "user", content = prompt } }, max_tokens = max_tokens } } end
    return { path = "/v1/chat/completions", body = json.encode(chat_request(prompt, max_tokens, false)) }
end

-- run_client(bodies, on_done): sends each item in turn on one connection;
-- on_done(results). A failure ends the client: the items not sent yet are
-- recorded as failed too.
local function run_client(bodies, on_done)
    local results = {}
    client.connect(host, port, function(conn, err)
        local function fail_rest(from, why)
            for j = from, #bodies do results[j] = { error = "not sent: " .. tostring(why), events = {} } end
            if conn then conn:close() end
            on_done(results)
        end
        if not conn then return fail_rest(1, err) end
        local idx = 0
        local function next_request()
            idx = idx + 1
            if idx > #bodies then
                conn:close()
                return on_done(results)
            end
            local item = bodies[idx]
            if item.stream then
                client.stream({ conn = conn, host = host, port = port, req = item.stream, headers = headers },
                    function(s)
                        results[idx] = s
                        if not s.ok then return fail_rest(idx + 1, s.error) end
                        next_request()
                    end)
            else
                local h = { ["Content-Type"] = "application/json" }
                for k, v in pairs(headers or {}) do h[k] = v end
                conn:send({ method = "POST", path = item.path, body = item.body, headers = h }, function(r)
                    r.ok = r.status == 200 and not r.error
                    if not r.ok then r.error = r.error or ("HTTP " .. tostring(r.status)) end
                    r.events = {}
                    results[idx] = r
                    if not r.ok then return fail_rest(idx + 1, r.error) end
                    next_request()
                end)
            end
        end
        next_request()
    end)
end

------------------------------------------------------------------ statistics

local function quantile(list, q)
    if #list == 0 then return 0 / 0 end
    local s = {}
    for i, v in ipairs(list) do s[i] = v end
    table.sort(s)
    local k = math.max(1, math.min(#s, math.ceil(q * #s)))
    return s[k]
end

local function ms(x) return string.format("%.1f ms", x * 1000) end

-- Runs n clients, each with its bodies; returns all results (in the order
-- they finished), the wall time, and each client's results in its order.
local function run_clients(list_of_bodies)
    local all, per, left = {}, {}, #list_of_bodies
    local t0 = now()
    for c, bodies in ipairs(list_of_bodies) do
        run_client(bodies, function(results)
            per[c] = results
            for _, r in ipairs(results) do all[#all + 1] = r end
            left = left - 1
            if left == 0 then uv.stop() end
        end)
    end
    uv.run("default")
    return all, now() - t0, per
end

local function summarize(results)
    local ttft, itl, failed, tokens = {}, {}, 0, 0
    for _, r in ipairs(results) do
        if not r.ok then
            failed = failed + 1
        else
            if r.events[1] then ttft[#ttft + 1] = r.events[1] - r.t0 end
            for i = 2, #r.events do itl[#itl + 1] = r.events[i] - r.events[i - 1] end
            tokens = tokens + #r.events
        end
    end
    return { ttft = ttft, itl = itl, failed = failed, tokens = tokens }
end

-- POSTs value as JSON to path on a connection of its own; returns the
-- decoded answer (an error unless it is a 200).
local function post_json(path, value)
    local r = run_clients({ { { path = path, body = json.encode(value) } } })[1]
    if not r.ok then die(string.format("POST %s: %s", path, tostring(r.error))) end
    return json.decode(r.body)
end

-- The chat message content whose request comes to `target` prompt tokens
-- on the served model, and the count the server gave for it (when target
-- is out of reach, the nearest it found). The template's own tokens come
-- from a request with empty content, the content's from /tokenize (no
-- generation: every length tried would otherwise be a new pass shape for
-- the engine), and a real request checks the sum, which a merge across the
-- template's edge can change by a token.
local function prompt_of(target)
    local function prompt_tokens(content)
        return post_json("/v1/chat/completions", chat_request(content, 1, false)).usage.prompt_tokens
    end
    local function content_tokens(text)
        return #post_json("/tokenize", { content = text }).tokens
    end
    local text = string.rep("the sea was calm ", 64)
    local fixed = prompt_tokens("")
    -- The longest prefix of text of at most `want` tokens (a longer prefix
    -- has no fewer tokens, give or take a merge: close enough to start).
    local function prefix(want)
        local lo, hi = 0, #text
        while lo < hi do
            local mid = math.ceil((lo + hi) / 2)
            if content_tokens(text:sub(1, mid)) <= want then lo = mid else hi = mid - 1 end
        end
        return text:sub(1, lo)
    end
    local want, content, got = target - fixed, "", fixed
    for _ = 1, 3 do
        if want < 1 then break end
        content = prefix(want)
        got = prompt_tokens(content)
        if got == target then break end
        want = want + target - got
    end
    return content, got
end

------------------------------------------------------------------ conversations

-- Filler prose from a fixed word list in a seeded order: paragraphs that
-- differ, so a tokenizer cannot fold them into a few long tokens.
local WORDS = { "the", "river", "ran", "past", "old", "mills", "where", "workers", "once", "wove", "cotton",
    "into", "cloth", "for", "ships", "that", "sailed", "south", "every", "spring", "carrying", "letters",
    "grain", "and", "stories", "of", "distant", "harbours", "while", "children", "counted", "sails", "from",
    "hills", "above", "town", "quiet", "evening", "lamps", "glowed", "along", "narrow", "streets", "near",
    "market", "square", "bakers", "sold", "bread", "to", "travellers", "waiting", "coaches", "north" }

local function paragraph(seed, n_words)
    local x, out = seed * 2654435761 % 4294967296, {}
    for i = 1, n_words do
        x = (1103515245 * x + 12345) % 2147483648
        out[i] = WORDS[x % #WORDS + 1]
    end
    return table.concat(out, " ") .. "."
end

local function tokens_of(text) return #post_json("/tokenize", { content = text }).tokens end

-- Messages alternating user and assistant, ending with an assistant's, of
-- about `target` tokens together (the template adds a few per message).
local function history_of(target)
    local msgs, total, i = {}, 0, 0
    while total < target or #msgs % 2 == 1 do
        i = i + 1
        local text = paragraph(i, 110)
        msgs[#msgs + 1] = { role = #msgs % 2 == 0 and "user" or "assistant", content = text }
        total = total + tokens_of(text) + 5
    end
    return msgs
end

-- A streamed chat request of these messages; max_tokens 8 (the next turn
-- carries the answer), usage at the end; cache_prompt true, since the
-- shared client otherwise asks llama-server (--url) not to reuse a cached
-- prefix, the very thing measured here.
local function turn_body(messages)
    return { stream = { messages = messages, max_tokens = 8, cache_prompt = true } }
end

-- One request on its own connection: its result (events, text, usage).
local function one_request(body)
    local r = run_clients({ { body } })[1]
    if not r.ok then die("request failed: " .. tostring(r.error)) end
    return r
end

-- Time to the first event of the stream: the server sends it with the
-- first token, whether or not that token has text yet (a random model's
-- first token may be a byte of an unfinished character, or a control
-- token), so this is the first token's time.
local function ttft_of(r) return (r.t_first_event or r.events[1] or 0 / 0) - r.t0 end

-- The next turn of a conversation with a history of about `target`
-- tokens, cold (a new system prompt: nothing cached) and warm (the turn
-- after, every earlier turn cached), opts.reps conversations.
local function chat_turns(target)
    local history = history_of(target)
    local cold, warm, cached, prompt_tokens = {}, {}, {}, 0
    for rep = 1, opts.reps do
        local msgs = { { role = "system", content = string.format("Conversation %d.%d: %s", rep, math.floor(now()),
                                                                    paragraph(1000 + rep, 20)) } }
        for _, m in ipairs(history) do msgs[#msgs + 1] = m end
        msgs[#msgs + 1] = { role = "user", content = "Summarise the last paragraph." }
        local r = one_request(turn_body(msgs))
        cold[#cold + 1] = ttft_of(r)
        prompt_tokens = r.usage and r.usage.prompt_tokens or prompt_tokens
        for t = 1, 2 do
            msgs[#msgs + 1] = { role = "assistant", content = table.concat(r.text) }
            msgs[#msgs + 1] = { role = "user", content = "And then, part " .. t .. "?" }
            r = one_request(turn_body(msgs))
            warm[#warm + 1] = ttft_of(r)
            local d = r.usage and r.usage.prompt_tokens_details
            cached[#cached + 1] = d and d.cached_tokens or 0 / 0
        end
    end
    return { history_tokens = prompt_tokens, cold_ttft = quantile(cold, 0.5), warm_ttft = quantile(warm, 0.5),
             cached_tokens = quantile(cached, 0.5) }
end

-- One long prompt beside 15 short streams, sent together. The long one
-- opens with a tag of this run, so that a server an earlier run used
-- (--url) has none of it in its prefix cache: its prefill is measured.
local function long_beside_short(long_tokens)
    local tag = string.format("Run %d.", math.floor(now() * 1000))
    local parts, total, i = { tag }, tokens_of(tag .. " "), 0
    while total < long_tokens - 16 do
        i = i + 1
        local text = paragraph(5000 + i, 110)
        parts[#parts + 1] = text
        total = total + tokens_of(text .. " ")
    end
    local lists = { { { stream = { messages = { { role = "user", content = table.concat(parts, " ") } },
                                   max_tokens = 8 } } } }
    for c = 1, 15 do
        lists[#lists + 1] = { chat_body("Short request " .. c .. ": tell me about the sea.", opts.tokens, true) }
    end
    local _, _, per = run_clients(lists)
    local long = per[1][1]
    local short_ttft, itl, failed, long_end = {}, {}, long.ok and 0 or 1, long.t_end or now()
    local waited, before = 0, 0
    for c = 2, 16 do
        local r = per[c][1]
        if not r.ok then
            failed = failed + 1
        else
            short_ttft[#short_ttft + 1] = ttft_of(r)
            -- "waited": its first token came only after the long one ended;
            -- "before": it came while the long prompt was still prefilling
            if (r.events[1] or math.huge) > long_end then waited = waited + 1 end
            if (r.events[1] or math.huge) < (long.events[1] or math.huge) then before = before + 1 end
            for k = 2, #r.events do itl[#itl + 1] = r.events[k] - r.events[k - 1] end
        end
    end
    return { long_tokens = total, failed = failed, waited = waited, before_long = before, long_ttft = ttft_of(long),
             short_ttft_max = quantile(short_ttft, 1), short_itl_p50 = quantile(itl, 0.5),
             short_itl_p99 = quantile(itl, 0.99) }
end

------------------------------------------------------------------ modes

-- One stream of opts.tokens: its tokens/s after the first, and its
-- inter-token latencies.
local function one_stream()
    local one = run_clients({ { chat_body("Write a long story about the sea.", opts.tokens, true) } })
    local s1 = summarize(one)
    return s1.tokens / (one[1].t_end - one[1].events[1]), s1
end

-- 16 streams of opts.tokens at once: aggregate tokens/s and the summary.
local function sixteen_streams()
    local lists = {}
    for c = 1, 16 do lists[c] = { chat_body("Story number " .. c .. " about the sea.", opts.tokens, true) } end
    local many, wall = run_clients(lists)
    local s16 = summarize(many)
    return s16.tokens / wall, s16
end

local figures = {}

if opts.mode == "load" then
    local lists = {}
    for c = 1, opts.clients do
        local bodies = {}
        for r = 1, opts.requests do
            bodies[r] = chat_body(string.format("Client %d, request %d: tell me something.", c, r), opts.max_tokens, true)
        end
        lists[c] = bodies
    end
    local results, wall = run_clients(lists)
    local s = summarize(results)
    figures = {
        requests = #results, failed = s.failed, tokens = s.tokens, seconds = wall,
        tokens_per_s = s.tokens / wall,
        ttft_p50 = quantile(s.ttft, 0.5), ttft_p99 = quantile(s.ttft, 0.99),
        itl_p50 = quantile(s.itl, 0.5), itl_p99 = quantile(s.itl, 0.99),
    }
    print(string.format("%d clients x %d requests (max_tokens %d): %d failed", opts.clients, opts.requests,
        opts.max_tokens, s.failed))
    print(string.format("time to first token: p50 %s, p99 %s", ms(figures.ttft_p50), ms(figures.ttft_p99)))
    print(string.format("inter-token latency: p50 %s, p99 %s", ms(figures.itl_p50), ms(figures.itl_p99)))
    print(string.format("%d streamed tokens in %.1f s: %.1f tokens/s", s.tokens, wall, figures.tokens_per_s))
elseif opts.mode == "gpu" then
    -- 1. One stream.
    local one_tps, s1 = one_stream()
    figures.one_itl_p50, figures.one_itl_p99 = quantile(s1.itl, 0.5), quantile(s1.itl, 0.99)
    figures.one_tokens_per_s = one_tps
    print(string.format("one stream of %d tokens: inter-token p50 %s, p99 %s (p99/p50 %.2f, target <= 1.5); %.1f tokens/s",
        opts.tokens, ms(figures.one_itl_p50), ms(figures.one_itl_p99), figures.one_itl_p99 / figures.one_itl_p50, one_tps))
    -- 2. Sixteen streams.
    local tps16, s16 = sixteen_streams()
    figures.streams16_failed = s16.failed
    figures.streams16_tokens_per_s = tps16
    figures.streams16_ratio = figures.streams16_tokens_per_s / one_tps
    figures.streams16_ttft_p50 = quantile(s16.ttft, 0.5)
    print(string.format("16 streams of %d tokens: %.1f tokens/s in aggregate (%.1fx one stream, target >= 8x), " ..
        "time to first token median %s, %d failed", opts.tokens, figures.streams16_tokens_per_s, figures.streams16_ratio,
        ms(figures.streams16_ttft_p50), s16.failed))
    -- 3. First byte of a 32-token prompt, max_tokens 1 (not streamed).
    local prompt, n_prompt = prompt_of(32)
    figures.first_byte_prompt_tokens = n_prompt
    local firsts = {}
    for _ = 1, 20 do
        local r = run_clients({ { chat_body(prompt, 1, false) } })[1]
        firsts[#firsts + 1] = (r.t_first_byte or 0 / 0) - r.t0
    end
    figures.first_byte_p50 = quantile(firsts, 0.5)
    print(string.format("%d-token prompt (as the server counts it), max_tokens 1: first byte median %s " ..
        "(target <= 33 ms)", n_prompt, ms(figures.first_byte_p50)))
elseif opts.mode == "kv" then
    -- a short request first: the first pass of each shape (GPU graphs) is not timed
    one_request(turn_body({ { role = "user", content = "Hello." } }))
    local rows = {}
    for target in tostring(opts.history):gmatch("%d+") do
        rows[#rows + 1] = chat_turns(tonumber(target))
        local r = rows[#rows]
        io.stderr:write(string.format("history %d: cold %s, warm %s\n", r.history_tokens, ms(r.cold_ttft), ms(r.warm_ttft)))
    end
    figures.chat_turns = rows
    local mixed = long_beside_short(opts.long)
    figures.long_beside_short = mixed
    local one_tps = one_stream()
    local tps16, s16 = sixteen_streams()
    figures.one_tokens_per_s, figures.streams16_tokens_per_s = one_tps, tps16
    figures.streams16_ratio, figures.streams16_failed = tps16 / one_tps, s16.failed
    figures.failed = mixed.failed + s16.failed

    print(string.format("\nKV cache across requests (%s)", opts.model or opts.url))
    print("| next chat turn: history tokens | cold TTFT | warm TTFT (prefix cache) | warm / cold | cached tokens |")
    print("|---|---|---|---|---|")
    for _, r in ipairs(rows) do
        print(string.format("| %d | %s | %s | %.4fx | %s |", r.history_tokens, ms(r.cold_ttft), ms(r.warm_ttft),
            r.warm_ttft / r.cold_ttft, tostring(r.cached_tokens)))
    end
    print(string.format("| %d-token prompt beside 15 streams | long TTFT %s | short TTFT max %s | short ITL p50 %s, p99 %s | " ..
        "failed %d; first token before the long one's: %d of 15; after its end: %d |", mixed.long_tokens,
        ms(mixed.long_ttft), ms(mixed.short_ttft_max), ms(mixed.short_itl_p50), ms(mixed.short_itl_p99), mixed.failed,
        mixed.before_long, mixed.waited))
    print(string.format("| 16 streams of %d tokens | %.1f tokens/s | one stream %.1f tokens/s | %.1fx | failed %d |",
        opts.tokens, tps16, one_tps, figures.streams16_ratio, s16.failed))
end

if opts.json then print(json.encode(figures)) end
if server_proc then
    server_proc:kill("sigterm")
    uv.run("default")
end
return ((figures.failed or 0) + (figures.streams16_failed or 0)) == 0 and 0 or 1
