-- apr verify FILE: structure checks, and optionally the SHA256 and a scan
-- of every block for NaN/Inf scales. Each check prints ok, FAIL or skip;
-- any FAIL makes the exit code 1.
local core = require "apr.core"
local cli = require "apr.cli"
local args = require "apr.cli.args"
local mi = require "apr.model_info"
local checksum = require "apr.checksum"
local C, ffi = core.C, core.ffi

local M = {}

M.spec = {
    usage = "apr verify FILE [--checksum [HEX]] [--deep] [--json]",
    summary = "Check a model file: structure, shapes, SHA256, and NaN/Inf in its blocks.",
    description = "Structure: the header parses, every tensor lies inside the file at an aligned\n" ..
                  "offset, every type is known. Model: the loader's own checks (what `apr pass`\n" ..
                  "would refuse: hyperparameters, tokenizer, each tensor's presence, shape and\n" ..
                  "type). Shapes: every tensor the architecture needs, with the shape its\n" ..
                  "hyperparameters give (all mismatches, not just the first).\n" ..
                  "APR files: every chunk is decoded and checked against its checksum, and\n" ..
                  "--checksum alone compares the SHA256 of the bytes before its trailer with the\n" ..
                  "digest the trailer records.\n" ..
                  "--checksum HEX compares the SHA256 with HEX; --checksum alone compares it\n" ..
                  "with the digest recorded in the sidecar (FILE.sha256, or the cache).\n" ..
                  "--deep reads every block and fails on a NaN or Inf scale or value.",
    options = {
        { "checksum", help = "compare the SHA256 with HEX (the next argument) or the recorded digest" },
        { "deep", help = "scan every tensor's blocks for NaN/Inf (reads the whole file)" },
        { "json", help = "print the checks as one JSON object" },
    },
    positional = { min = 1, max = 2, name = "FILE" },
    examples = {
        "apr verify models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf --checksum",
        "apr verify tests/fixtures/models/tiny-q8_0.gguf --deep",
    },
}

-- FILE and HEX in either order: HEX is the 64-hex-digit argument.
local function file_and_digest(opts)
    local file, hex = opts[1], nil
    if opts[2] then
        if opts[1]:match("^%x+$") and #opts[1] == 64 then file, hex = opts[2], opts[1] else hex = opts[2] end
        if not opts.checksum then args.usage_error("unexpected argument '%s'", opts[2]) end
        if not (hex:match("^%x+$") and #hex == 64) then
            args.usage_error("--checksum expects 64 hex digits, got '%s'", hex)
        end
    end
    return file, hex and hex:lower()
end

local function structure_checks(f, report)
    local tensors = f:tensors()
    local parts = #f.files > 1 and string.format(" in %d files", #f.files) or ""
    if f.gguf_version then
        report("ok", "header", string.format("APR v%d of a GGUF v%d, %d keys, %d tensors", f.version, f.gguf_version,
            #f:keys(), #tensors))
        report("ok", "tensor data", string.format("%d tensors in %d chunks inside the file (%d bytes), none overlapping",
            #tensors, f.n_chunks, f.size))
    else
        report("ok", "header", string.format("%s v%d, %d keys, %d tensors%s", f.format, f.version, #f:keys(), #tensors,
            parts))
        report("ok", "tensor data", string.format("%d tensors inside the %s (%d bytes), aligned to %d",
            #tensors, #f.files > 1 and "files" or "file", f.size, f.alignment))
    end
    local seen, names = {}, {}
    for _, t in ipairs(tensors) do
        if not seen[t.type] then seen[t.type] = true; names[#names + 1] = t.type end
    end
    table.sort(names)
    report("ok", "types", table.concat(names, ", "))
    -- What loading would say, from the loader's own checks (apr.h
    -- apr_model_validate): hyperparameters, tokenizer, each tensor.
    local status = C.apr_model_validate(f.path)
    if status == 0 then
        report("ok", "model", "the loader's checks pass (hyperparameters, tokenizer, tensors)")
    else
        local _, msg = core.failure(status)
        -- the loader names the file first; every line here is about it
        if msg:sub(1, #f.path + 2) == f.path .. ": " then msg = msg:sub(#f.path + 3) end
        report("FAIL", "model", msg)
    end
    local hp = mi.hparams(f, tensors)
    local problems, extras = mi.check_shapes(hp, tensors)
    if not problems then
        report("skip", "shapes", extras)
    elseif #problems > 0 then
        local shown = {}
        for i = 1, math.min(#problems, 3) do shown[i] = problems[i] end
        report("FAIL", "shapes", table.concat(shown, "; ") ..
            (#problems > 3 and string.format(" (and %d more)", #problems - 3) or ""))
    else
        local note = #extras > 0 and string.format("; %d other tensors (%s%s)", #extras, extras[1],
            #extras > 1 and ", ..." or "") or ""
        report("ok", "shapes", string.format("%s: %d layers, n_embd %d, n_ff %d, %d heads, %d KV heads, vocab %d%s",
            hp.arch, hp.n_layer, hp.n_embd, hp.n_ff, hp.n_head, hp.n_kv_head, hp.n_vocab, note))
    end
    return tensors
end

-- The SHA256 of file k of f (a split model has one per part) against want
-- or, without it, the digest its sidecar records.
-- APR: every chunk decodes to the XXH3 checksum of its raw bytes.
local function chunk_check(f, tensors, report)
    local progress = require("apr.cli.term").progress("chunks")
    local total, done = 0, 0
    for _, t in ipairs(tensors) do total = total + t.bytes end
    for i, t in ipairs(tensors) do
        if C.apr_interrupted() ~= 0 then
            progress.finish()
            cli.fail("interrupted")
        end
        local ok, err = f:check_tensor(i - 1)
        if not ok then
            progress.finish()
            return report("FAIL", "chunks", err)
        end
        done = done + t.bytes
        progress.update(done, total)
    end
    progress.finish()
    report("ok", "chunks", string.format("%d chunks (%s of tensor data) match their checksums", f.n_chunks,
        mi.format_size(total)))
end

-- APR without a digest given: the SHA-256 its trailer records for the
-- bytes before it.
local function apr_checksum_check(f, report)
    local got, err = checksum.compute(f, 1, f.hashed_size)
    if not got then cli.fail("%s: SHA256 %s", f.path, err) end
    if got == f.file_sha256 then
        report("ok", "sha256", got .. " matches the digest the file records")
    else
        report("FAIL", "sha256", string.format("the bytes before the trailer hash to %s, but the file records %s", got,
            f.file_sha256))
    end
end

local function checksum_check(f, want, report, k)
    if f.gguf_version and not want then return apr_checksum_check(f, report) end
    local path = f.files[k].path
    local check = #f.files > 1 and string.format("sha256 %d/%d", k, #f.files) or "sha256"
    local source = "given digest"
    if not want then
        local fresh
        want, fresh = checksum.recorded(path)
        if not want then
            return report("FAIL", check, "no recorded digest for " .. path ..
                " (run 'apr info' once, or pass the expected digest: --checksum HEX)")
        end
        source = fresh and "recorded digest" or "digest recorded before the file last changed"
    end
    local got, err = checksum.compute(f, k)
    if not got then cli.fail("%s: SHA256 %s", path, err) end
    if got == want then
        checksum.store(path, got)
        report("ok", check, got .. " matches the " .. source)
    else
        report("FAIL", check, string.format("%s, but the %s is %s", got, source, want))
    end
end

local bad_box = ffi.new("int64_t[1]")

local function deep_check(f, tensors, report)
    local progress = require("apr.cli.term").progress("scan")
    local total, done, skipped, bad = 0, 0, {}, nil
    for _, t in ipairs(tensors) do total = total + t.bytes end
    for _, t in ipairs(tensors) do
        local data, err = f:tensor_data(t.name)
        if not data then
            progress.finish()
            return report("FAIL", "deep", err)
        end
        local s = C.apr_dtype_check_finite(t.dtype, data, t.elements, bad_box)
        f:release_tensor(t.name)  -- one decoded tensor at a time
        if s == C.APR_ERR_CANCELLED then
            progress.finish()
            cli.fail("interrupted")
        elseif s == C.APR_ERR_UNSUPPORTED then
            skipped[#skipped + 1] = t.name
        elseif s ~= 0 then
            local _, msg = core.failure(s)
            bad = bad or string.format("tensor '%s': %s", t.name, msg)
        end
        done = done + t.bytes
        progress.update(done, total)
    end
    progress.finish()
    if bad then return report("FAIL", "deep", bad) end
    local note = #skipped > 0 and string.format(" (%d tensors of types apr cannot scan skipped)", #skipped) or ""
    report("ok", "deep", string.format("%d tensors, %s: no NaN or Inf%s", #tensors - #skipped,
        mi.format_size(total), note))
end

function M.run(opts)
    local path, want = file_and_digest(opts)
    local f = mi.open(path)
    local results, failed = {}, 0
    local function report(status, check, detail)
        results[#results + 1] = { status = status, check = check, detail = detail }
        if status == "FAIL" then failed = failed + 1 end
        if not opts.json then
            io.stdout:write(string.format("%-5s %-12s %s\n", status, check, detail))
            io.stdout:flush()
        end
    end
    local tensors = structure_checks(f, report)
    if f.gguf_version then chunk_check(f, tensors, report) end
    if opts.checksum then
        if want and #f.files > 1 then
            args.usage_error("%s is a split model of %d files: --checksum alone checks each against its recorded " ..
                "digest", path, #f.files)
        end
        for k = 1, #f.files do checksum_check(f, want, report, k) end
    end
    if opts.deep then deep_check(f, tensors, report) end
    if opts.json then
        io.stdout:write(require("cjson").encode({ path = path, ok = failed == 0, checks = results }), "\n")
    end
    if failed > 0 then
        -- one line that says what is wrong: the first failure
        local first
        for _, r in ipairs(results) do
            if r.status == "FAIL" then first = r break end
        end
        cli.fail("%s: %d of %d checks failed (%s: %s)", path, failed, #results, first.check, first.detail)
    end
    return 0
end

return M
