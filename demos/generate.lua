-- generate.lua — complete a prompt, streaming, then report the timings.
--
--   apr run demos/generate.lua [MODEL] [PROMPT]
local apr = require "apr"

local path = arg[1] or require("apr.model").default_model_path()
local prompt = arg[2] or "fn fibonacci(n: u64) -> u64 {"

local m = assert(apr.load(path))
local gen = m:generate(prompt, { max_tokens = 48, temperature = 0 })
io.write(prompt)
for t in gen do
    io.write(t.text)
    io.flush()
end
io.write("\n")

local s = gen.summary
io.stderr:write(string.format("%d prompt tokens at %.1f tokens/s, %d generated at %.1f tokens/s (%s)\n",
    s.n_prompt, s.timings.prompt_tps, s.n_generated, s.timings.decode_tps, s.finish_reason))
