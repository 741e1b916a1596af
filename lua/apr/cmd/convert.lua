-- apr convert IN --output OUT: GGUF to APR v2 (compressed, checksummed) or
-- APR v2 back to the original GGUF, byte for byte.
local cli = require "apr.cli"
local args = require "apr.cli.args"
local convert = require "apr.convert"
local mi = require "apr.model_info"
local term = require "apr.cli.term"

local M = {}

M.spec = {
    usage = "apr convert IN --output OUT [--compression lz4|zstd|none] [--level N] [--filter NAME] " ..
            "[--chunk-size SIZE] [--threads N] [--verify] [--json]",
    summary = "Convert a GGUF model to APR v2 (checksummed, compressed, mappable), or an APR file back to GGUF.",
    description = "The direction follows IN's format. GGUF -> APR cuts every tensor in chunks,\n" ..
                  "compresses them on all cores and records an XXH3 checksum per chunk and the\n" ..
                  "SHA-256 of the file and of the source (docs/apr-format.md). Quantized weights\n" ..
                  "are nearly random: a chunk that compresses by less than 1% is stored as is,\n" ..
                  "and a tensor none of whose chunks compressed stays mappable in place.\n" ..
                  "APR -> GGUF writes the source's original bytes and checks that their SHA-256\n" ..
                  "is the one recorded. OUT appears only when complete: a failed or interrupted\n" ..
                  "conversion (Ctrl+C) leaves nothing under its name.",
    options = {
        { "output", short = "o", value = "OUT", required = true, help = "the file to write" },
        { "compression", value = "CODEC", choices = convert.codecs, help = "GGUF -> APR: codec [default: lz4]" },
        { "level", value = "N", type = "integer", min = 1, max = 22,
          help = "codec level (lz4: 1 fast, 2-12 HC; zstd: 1-22, default 3)" },
        { "filter", value = "NAME", choices = convert.filters,
          help = "byte planes before compression (auto: with zstd) [default: auto]" },
        { "chunk-size", value = "SIZE", type = "size", help = "raw bytes per chunk, at most 4M [default: 2M]" },
        { "threads", value = "N", type = "integer", min = 1, max = 256, help = "threads [default: all CPUs]" },
        { "verify", help = "read the output back: every chunk's checksum, the SHA-256" },
        { "json", help = "print a JSON summary" },
    },
    positional = { min = 1, max = 1, name = "IN" },
    examples = {
        "apr convert models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf --output /tmp/coder.apr --verify",
        "apr convert /tmp/coder.apr --output /tmp/coder.gguf",
        "apr convert tests/fixtures/models/tiny-f16.gguf -o /tmp/tiny.apr --compression zstd --level 9",
    },
}

local function rate(done, secs)
    return secs > 0 and string.format("%s/s", mi.format_size(done / secs)) or ""
end

local function pct(x) return string.format("%.1f%%", 100 * x) end

function M.run(opts)
    local input, output = opts[1], opts.output
    local kind = require("apr.file").sniff(input)
    if kind == "APR" then
        for _, o in ipairs({ "compression", "level", "filter", "chunk_size" }) do
            if opts[o] ~= nil then
                args.usage_error("--%s applies to GGUF -> APR; %s is APR (it converts back to GGUF)",
                    o:gsub("_", "-"), input)
            end
        end
        if output:match("%.apr$") then args.usage_error("an APR input converts to GGUF: name the output .gguf") end
    elseif kind == "GGUF" then
        if output:match("%.gguf$") then args.usage_error("a GGUF input converts to APR: name the output .apr") end
    end
    if opts.level then
        local codec = opts.compression or "lz4"
        local max = ({ lz4 = 12, zstd = 22 })[codec]
        if not max then args.usage_error("--level needs --compression lz4 or zstd (not %s)", codec) end
        if opts.level > max then args.usage_error("--level for %s is 1 to %d, got %d", codec, max, opts.level) end
    end
    if opts.chunk_size and (opts.chunk_size < 1 or opts.chunk_size > 4 * 2 ^ 20) then
        args.usage_error("--chunk-size must be between 1 byte and 4M, got %d", opts.chunk_size)
    end
    local label = "converting " .. (input:match("([^/]+)$") or input)
    local bar = term.progress(label, { lines = true, rate = rate })
    local result, err = convert.run(input, output, {
        compression = opts.compression, level = opts.level, filter = opts.filter, threads = opts.threads,
        chunk_bytes = opts.chunk_size, progress = bar.update,
    })
    bar.finish()
    if not result then
        if err == "interrupted" then
            io.stderr:write(string.format("apr convert: interrupted; %s was not written\n", output))
            return 130
        end
        cli.fail("%s", err)
    end
    if opts.verify then
        local vbar = term.progress("verifying " .. (output:match("([^/]+)$") or output), { lines = true, rate = rate })
        local v, verr
        if result.direction == "gguf->apr" then
            v, verr = convert.verify(output, { progress = vbar.update, threads = opts.threads })
        else
            -- the export already hashed what it wrote against the recorded digest;
            -- hash the file on disk again, as a reader would
            local f = assert(require("apr.file").open(output))
            local sha, why = require("apr.checksum").compute(f)
            if sha and sha ~= result.sha256 then why = "SHA-256 of the file on disk is " .. sha end
            v, verr = sha == result.sha256 and { sha256 = sha } or nil, why
        end
        vbar.finish()
        if not v then
            if verr == "interrupted" then cli.fail("verification interrupted (%s was written)", output) end
            cli.fail("verification failed: %s", verr)
        end
        result.verified = v
    end
    if opts.json then
        io.stdout:write(require("cjson").encode(result), "\n")
        return 0
    end
    local r = result
    local speed = r.seconds > 0 and rate(r.input_bytes, r.seconds) or ""
    if r.direction == "gguf->apr" then
        io.stdout:write(string.format("wrote %s: APR v2, %s%s, %s -> %s (%s) in %.1f s, %s\n", output,
            r.compression, r.compression == "none" and "" or (" level " .. r.level), mi.format_size(r.input_bytes),
            mi.format_size(r.output_bytes), pct(r.output_bytes / r.input_bytes), r.seconds, speed))
        if r.compression ~= "none" then
            io.stdout:write(string.format("  %d of %d tensors compressed; the others are stored as is (%s saved less than 1%%)\n",
                r.compressed_tensors, r.tensors, r.compression))
            for _, a in ipairs(r.by_type) do
                io.stdout:write(string.format("  %-6s %4d tensors %12s -> %12s (%s)\n", a.type, a.tensors,
                    mi.format_size(a.bytes), mi.format_size(a.stored), pct(a.ratio)))
            end
        end
        io.stdout:write("  source SHA-256 ", r.source_sha256, "\n")
        if r.verified then
            io.stdout:write(string.format("verified: %d chunks match their checksums; SHA-256 %s matches\n",
                r.verified.chunks, r.verified.sha256))
        end
    else
        io.stdout:write(string.format("wrote %s: %s, %s in %.1f s, %s\n", output, r.format,
            mi.format_size(r.output_bytes), r.seconds, speed))
        io.stdout:write("  SHA-256 ", r.sha256, r.matches_source and " (the source's, as recorded)\n" or
            " (the APR file records no source digest to compare with)\n")
        if r.verified then io.stdout:write("verified: the file on disk hashes to the same SHA-256\n") end
    end
    return 0
end

return M
