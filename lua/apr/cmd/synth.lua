-- apr synth: write a synthetic model (real architecture, random weights).
local cli = require "apr.cli"
local synth = require "apr.synth"
local term = require "apr.cli.term"

local M = {}

M.spec = {
    usage = "apr synth --preset NAME --layout q4_k_m|q8_0|f16 [--seed N] [--vocab tokenizer.json] [--layers N] OUT.gguf",
    summary = "Write a model with a real architecture's tensors and random weights.",
    description = "Tensor names, shapes and types are those of the preset's real GGUF files (q4_k_m:\n" ..
                  "llama.cpp's Q4_K_M rule, Q6_K for output.weight and for attn_v/ffn_down of the\n" ..
                  "layers it picks); weights are random with mean 0 and std 1/sqrt(fan-in), so the\n" ..
                  "file is good for measuring speed, not for generating text. The same seed gives\n" ..
                  "the same bytes on any machine. The vocabulary comes from a tokenizer.json\n" ..
                  "(.zst accepted), else a byte-level one with the ChatML specials.",
    options = {
        { "preset", value = "NAME", choices = synth.preset_names, required = true, help = "model shape" },
        { "layout", value = "NAME", choices = synth.layouts, default = "q4_k_m", help = "tensor types" },
        { "seed", value = "N", type = "integer", min = 0, default = 0, help = "random seed" },
        { "vocab", value = "FILE", help = "tokenizer.json (or .json.zst) to take the vocabulary from" },
        { "layers", value = "N", type = "integer", min = 1, max = 1024,
          help = "layers instead of the preset's (its geometry, shallower)" },
    },
    positional = { min = 1, max = 1, name = "OUT.gguf" },
    examples = {
        "apr synth --preset qwen2.5-coder-32b --layout q4_k_m /tmp/coder32b.gguf",
        "apr synth --preset tiny --layout q8_0 --seed 7 --vocab tokenizer.json.zst tiny.gguf",
        "apr synth --preset qwen2.5-coder-7b --layers 2 /tmp/coder7b-2l.gguf",
    },
}

local function gigabytes(n) return string.format("%.2f GB", n / 1e9) end

function M.run(opts)
    local out = opts[1]
    local plan, err = synth.plan(opts.preset, opts.layout, opts.vocab, opts.layers)
    if not plan then cli.fail("%s", err) end
    local bar = term.progress("writing " .. out)
    local result
    result, err = synth.write(out, plan, {
        seed = opts.seed,
        progress = function(done, total) bar.update(done, total) end,
    })
    bar.finish()
    if not result then
        if err == "interrupted" then
            io.stderr:write(string.format("apr synth: interrupted; %s was not written\n", out))
            return 130
        end
        cli.fail("%s", err)
    end
    io.stdout:write(string.format("wrote %s: %s %s, %d tensors, %s in %.1f s (%.0f MB/s)\n", out, plan.preset,
        plan.layout, result.tensors, gigabytes(result.bytes), result.seconds,
        result.bytes / 1e6 / math.max(result.seconds, 1e-9)))
    return 0
end

return M
