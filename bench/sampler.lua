-- sampler.lua — the cost of one draw from a Qwen2-size vocabulary, with the
-- filters a chat client typically sets, beside a full sort of the same
-- logits (what a sampler without partial selection always does), in one run.
--
--   apr run bench/sampler.lua [--draws N]
local ffi = require("apr.core").ffi
local sampler = require "apr.sampler"

local draws = 200
for i = 1, #arg do if arg[i] == "--draws" then draws = tonumber(arg[i + 1]) end end

local n_vocab = 151936
local logits = ffi.new("float[?]", n_vocab)
local seed = 13
for i = 0, n_vocab - 1 do
    seed = (seed * 1103515245 + 12345) % 2147483648
    logits[i] = (seed / 2147483648 - 0.5) * 20
end

local s = sampler.new(n_vocab, { temperature = 0.7, top_k = 40, top_p = 0.9, min_p = 0.05,
                                 repeat_penalty = 1.1, penalty_last_n = 64, seed = 1 })
local t0 = os.clock()
for _ = 1, draws do assert(s:sample(logits)) end
local per_draw = (os.clock() - t0) / draws * 1e3

-- the baseline: top-p over nearly the whole distribution, which forces the
-- sampler to order (almost) every logit, as a naive sampler always would
local full = sampler.new(n_vocab, { temperature = 0.7, top_p = 0.99999, seed = 1 })
t0 = os.clock()
for _ = 1, draws do assert(full:sample(logits)) end
local per_sort = (os.clock() - t0) / draws * 1e3

print(string.format("%-34s %10s", "vocabulary " .. n_vocab, "ms of CPU"))
print(string.format("%-34s %10.2f", "draw (top-k/p, min-p, penalty)", per_draw))
print(string.format("%-34s %10.2f", "draw, top-p 0.99999 (full order)", per_sort))
print(string.format("%-34s %10.1fx", "typical draw is cheaper by", per_sort / per_draw))
