-- inspect_model.lua — print a GGUF model's metadata and tensor table with
-- the Lua API (docs/lua-api.md, "Files").
--
--   apr run demos/inspect_model.lua tests/fixtures/models/tiny-q8_0.gguf
local apr = require "apr"

local path = arg[1] or "tests/fixtures/models/tiny-q8_0.gguf"
local f, err = apr.open(path)
if not f then
    io.stderr:write(err, "\n")
    return 1
end

print(string.format("%s: %s v%d, %.1f MB", f.path, f.format, f.version, f.size / 1e6))

-- Metadata: keys in file order; arrays are Lua arrays, so show their length.
print("\nmetadata:")
for _, key in ipairs(f:keys()) do
    local value = f.metadata[key]
    if type(value) == "table" then
        value = string.format("[%d items] first: %s", #value, tostring(value[1]))
    elseif type(value) == "string" and #value > 50 then
        value = value:sub(1, 47):gsub("\n", " ") .. "..."
    end
    print(string.format("  %-40s %s", key, tostring(value)))
end

-- Tensors: name, element type, shape (GGUF order: ne0 first) and size.
print("\ntensors:")
local total, params = 0, 0
for _, t in ipairs(f:tensors()) do
    print(string.format("  %-28s %-5s %-14s %9d bytes", t.name, t.type,
        "[" .. table.concat(t.shape, ", ") .. "]", t.bytes))
    total, params = total + t.bytes, params + t.elements
end
print(string.format("%d parameters in %d bytes (%.2f bits each)", params, total, 8 * total / params))

-- One tensor as an apr.tensor: a view into the file, dequantized on demand.
local emb = f:tensor("token_embd.weight")
local s = emb:stats()
print(string.format("\ntoken_embd.weight: %s %s, mean %.4f, std %.4f, min %.4f, max %.4f",
    emb:dtype(), "[" .. table.concat(emb:shape(), ", ") .. "]", s.mean, s.std, s.min, s.max))
