-- cli/generation.lua — what the commands that generate text (apr pass, apr chat)
-- share: their model and sampling options, loading the model, its notes and
-- the timings report.
local cli = require "apr.cli"

local M = {}

-- The options both commands take, by name. A command lists the ones it
-- wants and may change any field (a default, the help) where it differs.
local SHARED = {}
for _, opt in ipairs({
    { "max-tokens", short = "n", value = "N", type = "integer", min = 0, help = "most tokens to generate" },
    { "temperature", short = "t", value = "T", type = "number", min = 0, default = 0, help = "0 = greedy" },
    { "top-k", value = "K", type = "integer", min = 0, help = "sample among the K most likely (0 = all)" },
    { "top-p", value = "P", type = "number", min = 0, max = 1, help = "nucleus sampling mass" },
    { "min-p", value = "P", type = "number", min = 0, max = 1, help = "drop tokens below P x the best" },
    { "repeat-penalty", value = "X", type = "number", help = "llama.cpp's repetition penalty (1 = off)" },
    { "presence-penalty", value = "X", type = "number", help = "OpenAI's presence penalty" },
    { "frequency-penalty", value = "X", type = "number", help = "OpenAI's frequency penalty" },
    { "seed", short = "s", value = "N", type = "integer", min = 0, help = "random seed (same seed, same output)" },
    { "ctx", value = "N", type = "integer", min = 1, help = "context size in tokens [default: min(model's, 4096)]" },
    { "threads", value = "N", type = "integer", min = 1, help = "CPU threads [default: all]" },
    { "device", value = "NAME", choices = { "auto", "cpu", "cuda" }, default = "auto", help = "where to run" },
    { "gpu", help = "run on the GPU (fail if there is none)" },
    { "vram-budget", value = "SIZE", type = "size", help = "most GPU memory apr may allocate (e.g. 22G)" },
    { "kv-type", value = "TYPE", choices = { "f16", "q8_0", "q4_0" }, default = "f16",
      help = "KV cache element type (q8_0: about half of f16's memory, q4_0: a quarter)" },
    require("apr.trace.session").OPTION,
}) do
    SHARED[opt[1]] = opt
end

-- options(list) -> an _args option list. An entry is a shared option's
-- name, a table that names a shared option and overrides some of its
-- fields, or an option of the command's own.
function M.options(list)
    local out = {}
    for i, entry in ipairs(list) do
        if type(entry) == "string" then entry = { entry } end
        local base = SHARED[entry[1]]
        if base then
            local opt = {}
            for k, v in pairs(base) do opt[k] = v end
            for k, v in pairs(entry) do opt[k] = v end
            entry = opt
        elseif not entry.help then
            error("no shared option '" .. entry[1] .. "'", 2)
        end
        out[i] = entry
    end
    return out
end

-- The model path: the argument (a file, or a hub reference resolved by
-- apr.model_path), or the built-in default if it is installed. Checked
-- before apr pass waits for its prompt on stdin, so a wrong path fails at
-- once (a pipe is not opened: that would block).
function M.model_path(arg)
    local uv = require "luv"
    local path = arg or require("apr.model").default_model_path()
    local resolved, rerr = require("apr.model_path").resolve(path)
    if not resolved then cli.fail("%s", rerr) end
    path = resolved
    local st, err = uv.fs_stat(path)
    if st and st.type ~= "file" then
        -- the runtime's opener says the same (core/file.h)
        local kinds = { fifo = "a FIFO", directory = "a directory", char = "a character device",
                        block = "a block device", socket = "a socket" }
        cli.fail("%s: not a regular file (%s)", path, kinds[st.type] or st.type)
    end
    if not st and not arg then cli.fail("no model given and the default model is not installed: run `make model`") end
    -- stat and access(2), never open: nothing here may block (the loader
    -- opens it, refusing what is not a regular file without waiting)
    if not st then
        local reason = tostring(err):match("^%u+: (.-): ") or tostring(err)
        cli.fail("%s: %s", path, reason:sub(1, 1):upper() .. reason:sub(2))
    end
    if not uv.fs_access(path, "R") then cli.fail("%s: Permission denied", path) end
    return path
end

-- Loads the model (opts[1], or the default) with the shared options.
function M.load_model(opts)
    local path = M.model_path(opts[1])
    local m, err = require("apr.model").load(path, {
        device = opts.gpu and "cuda" or opts.device, threads = opts.threads, ctx = opts.ctx,
        vram_budget = opts.vram_budget, kv_type = opts.kv_type,
    })
    if not m then cli.fail("%s", err) end
    return m
end

-- The options of m:generate and m:chat, from the command line's.
function M.generate_opts(opts)
    return {
        max_tokens = opts.max_tokens, temperature = opts.temperature, top_k = opts.top_k,
        top_p = opts.top_p, min_p = opts.min_p, repeat_penalty = opts.repeat_penalty,
        presence_penalty = opts.presence_penalty, frequency_penalty = opts.frequency_penalty,
        seed = opts.seed, stop = opts.stop, ignore_eos = opts.ignore_eos or nil,
    }
end

-- Remarks the model object made (a missing chat template replaced by
-- ChatML), each printed once, on stderr.
function M.print_notes(m)
    local notes = m.notes or {}
    for i = (m.notes_printed or 0) + 1, #notes do io.stderr:write("note: ", notes[i], "\n") end
    m.notes_printed = #notes
end

-- Token counts and speeds of one generation (its summary), on stderr.
function M.report(s)
    local t = s.timings
    io.stderr:write(string.format(
        "prompt: %d tokens (%d reused) in %.2f s, %.1f tokens/s\n" ..
        "generated: %d tokens in %.2f s, %.1f tokens/s\nfinish: %s (%s), seed %d\n",
        s.n_prompt, s.n_cached, t.prompt_s or 0, t.prompt_tps or 0,
        s.n_generated, t.decode_s or 0, t.decode_tps or 0, s.finish_reason, s.stop_reason, s.seed))
end

return M
