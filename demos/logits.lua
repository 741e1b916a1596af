-- logits.lua — the model's next-token distribution after a prompt: the
-- five likeliest tokens and their probabilities.
--
--   apr run demos/logits.lua [MODEL] [PROMPT]
local apr = require "apr"
local sampler = require "apr.sampler"
local ffi = require "ffi"

local path = arg[1] or require("apr.model").default_model_path()
local prompt = arg[2] or "The capital of France is"

local m = assert(apr.load(path))
local ids = m:tokenize(prompt)
local logits = m:forward(ids)               -- F32 [n_vocab, #ids]
local last = logits:row(-1)                 -- after the whole prompt
local _, top = sampler.logprobs(ffi.cast("const float *", last:data()), m.info.n_vocab, 0, 5)

print(string.format("%q -> (%d tokens, logits %s)", prompt, #ids, table.concat(logits:shape(), "x")))
for i, t in ipairs(top) do
    print(string.format("%d. %-16q p = %.4f", i, m:detokenize({ t.id }), math.exp(t.logprob)))
end
