-- tensor_stats.lua — the statistics of every tensor of a GGUF file, and
-- what quantization does to one of them, with apr.tensor (docs/lua-api.md,
-- "Tensors").
--
--   apr run demos/tensor_stats.lua tests/fixtures/models/tiny-q4_k_m.gguf [TENSOR]
local apr = require "apr"

local path = arg[1] or "tests/fixtures/models/tiny-q4_k_m.gguf"
local f, err = apr.open(path)
if not f then
    io.stderr:write(err, "\n")
    return 1
end

-- Every tensor, dequantized on all cores. Synthetic weights should show
-- mean ~0 and std ~1/sqrt(fan-in), fan-in being ne0 (the row length).
print(string.format("%-26s %-5s %-12s %9s %9s %9s %9s %s", "tensor", "type", "shape", "mean", "std",
    "min", "max", "std*sqrt(ne0)"))
for _, info in ipairs(f:tensors()) do
    local t = f:tensor(info.name)
    local s = assert(t:stats())
    local shape = table.concat(t:shape(), "x")
    local scaled = #info.shape == 2 and string.format("%.3f", s.std * math.sqrt(info.shape[1])) or ""
    print(string.format("%-26s %-5s %-12s %9.5f %9.5f %9.4f %9.4f %s", info.name, t:dtype(), shape, s.mean, s.std,
        s.min, s.max, scaled))
    if s.nan + s.inf > 0 then print(string.format("  %d NaN, %d Inf", s.nan, s.inf)) end
end

-- One tensor up close: elements, a row, and a round trip through other types.
local name = arg[2] or "blk.0.ffn_down.weight"
local w = f:tensor(name)
if not w then
    io.stderr:write("no tensor ", name, "\n")
    return 1
end
print(string.format("\n%s: %s, %d elements in %d bytes", name, tostring(w), #w, w:nbytes()))
print(string.format("first element %.6f, last row's last element %.6f", w[1], w:row(-1)[w:shape()[1]]))

-- Converting dequantizes exactly, then quantizes the way llama.cpp would.
local exact = assert(w:to("f32"))
for _, dtype in ipairs({ "q8_0", "q6_k", "q4_k", "f16" }) do
    local back = assert(assert(exact:to(dtype)):to("f32"))
    local x, y = exact:table(), back:table()
    local err2, ref2 = 0, 0
    for i = 1, #x do
        err2 = err2 + (y[i] - x[i]) ^ 2
        ref2 = ref2 + x[i] ^ 2
    end
    print(string.format("as %-4s: relative RMS error %.4f", dtype, math.sqrt(err2 / ref2)))
end
return 0
