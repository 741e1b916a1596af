-- apr diff A B: whether two model files (GGUF or APR, any mix) hold the same
-- model: metadata, tokenizer, chat template, tensor list and every tensor's
-- data. Exit 0 only when they are equivalent.
local cli = require "apr.cli"
local diff = require "apr.diff"
local mi = require "apr.model_info"
local term = require "apr.cli.term"

local M = {}

M.spec = {
    usage = "apr diff A B [--json] [--max-shown N]",
    summary = "Compare two model files (GGUF or APR): metadata, tokenizer, template, tensors; exit 0 if equivalent.",
    description = "Metadata values are compared byte for byte, tensors by name: the same type\n" ..
                  "and shape bit for bit, different types by their dequantized values (the\n" ..
                  "largest |a - b| is shown). The container is not compared: an APR file and the\n" ..
                  "GGUF it was converted from are equivalent. Exit 0 when equivalent, 1 when not\n" ..
                  "(or when a file cannot be read).",
    options = {
        { "json", help = "print the report as one JSON object" },
        { "max-shown", value = "N", type = "integer", min = 1, default = 20,
          help = "differences listed per section" },
    },
    positional = { min = 2, max = 2, name = "A B" },
    examples = {
        "apr diff models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf /tmp/coder.apr",
        "apr diff tests/fixtures/models/tiny-q8_0.gguf tests/fixtures/models/tiny-q4_k_m.gguf",
    },
}

local function section_lines(out, name, s, max, summary)
    local n = #s.differences
    if n == 0 then
        out[#out + 1] = string.format("%s: the same%s", name, summary or "")
        return
    end
    out[#out + 1] = string.format("%s: %d difference%s", name, n, n == 1 and "" or "s")
    for i = 1, math.min(n, max) do
        local d = s.differences[i]
        if d.what == "differs" then
            out[#out + 1] = string.format("  %s: %s vs %s", d.key, d.a, d.b)
        else
            out[#out + 1] = string.format("  %s: %s", d.key, d.what)
        end
    end
    if n > max then out[#out + 1] = string.format("  (and %d more)", n - max) end
end

local function tensor_line(d)
    if d.what == "only in A" or d.what == "only in B" then return string.format("  %s: %s", d.name, d.what) end
    if d.what == "shape" then return string.format("  %s: %s vs %s", d.name, d.a, d.b) end
    if d.what == "not comparable" then return string.format("  %s: %s vs %s: %s", d.name, d.a, d.b, d.why) end
    local types = d.a == d.b and d.a or (d.a .. " vs " .. d.b)
    if d.what == "bits" then
        return string.format("  %s: %s: bytes differ, values equal (signed zeros or NaN payloads)", d.name, types)
    end
    local size = d.max_abs_diff and string.format(", max |a - b| = %.6g", d.max_abs_diff) or ""
    local nan = (d.nan_mismatch or 0) > 0 and string.format(", %d NaN on one side", d.nan_mismatch) or ""
    return string.format("  %s: %s: %d of %d values differ%s%s", d.name, types, d.differing, d.elements, size, nan)
end

local function describe(d)
    local extra = d.codecs and (", " .. table.concat(d.codecs, "/")) or ""
    return string.format("%s (%s%s, %s)", d.path, d.format, extra, mi.format_size(d.size))
end

function M.run(opts)
    local bar = term.progress("comparing")
    local r, err = diff.files(opts[1], opts[2], { progress = bar.update })
    bar.finish()
    if not r then
        if err == "interrupted" then
            io.stderr:write("apr diff: interrupted\n")
            return 130
        end
        cli.fail("%s", err)
    end
    if opts.json then
        io.stdout:write(require("cjson").encode(r), "\n")
        return r.equivalent and 0 or 1
    end
    local out, max = {}, opts.max_shown
    out[#out + 1] = "A: " .. describe(r.a)
    out[#out + 1] = "B: " .. describe(r.b)
    section_lines(out, "metadata", r.metadata, max, string.format(" (%d keys)", r.metadata.keys))
    local tok = r.tokenizer
    section_lines(out, "tokenizer", tok, max, tok.tokens and string.format(" (%d tokens%s)", tok.tokens,
        tok.merges and string.format(", %d merges", tok.merges) or "") or "")
    section_lines(out, "chat template", r.chat_template, max,
        r.chat_template.bytes and string.format(" (%d bytes)", r.chat_template.bytes) or " (none)")
    local t = r.tensors
    local n = #t.differences
    if n == 0 then
        out[#out + 1] = string.format("tensors: the same (%d, all bit-identical)", t.count_a)
    else
        out[#out + 1] = string.format("tensors: %d of %d in A and %d in B differ; %d bit-identical", n, t.count_a,
            t.count_b, t.bit_identical)
        for i = 1, math.min(n, max) do out[#out + 1] = tensor_line(t.differences[i]) end
        if n > max then out[#out + 1] = string.format("  (and %d more)", n - max) end
    end
    out[#out + 1] = r.equivalent and "equivalent" or "not equivalent"
    io.stdout:write(table.concat(out, "\n"), "\n")
    return r.equivalent and 0 or 1
end

return M
