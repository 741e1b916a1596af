-- apr pass [MODEL]: one prompt in, its completion out (a Unix filter).
local cli = require "apr.cli"

local M = {}

M.spec = {
    usage = "apr pass [MODEL] [--prompt TEXT] [options]",
    summary = "Complete a prompt from stdin (or --prompt) and stream the answer to stdout.",
    description =
        "The prompt is the user's message of a chat, rendered with the model's own chat\n" ..
        "template; --raw completes it as plain text instead. MODEL defaults to the built-in\n" ..
        "model that `make model` installs. Sampling is greedy unless --temperature is above\n" ..
        "0, so the same prompt gives the same answer. Ctrl+C stops and exits 130 after\n" ..
        "writing what was generated. Timings go to stderr with --verbose.",
    positional = { min = 0, max = 1, name = "MODEL" },
    options = {
        { "prompt", short = "p", value = "TEXT", help = "the prompt (instead of stdin)" },
        { "system", value = "TEXT", help = "a system message (chat template only)" },
        { "raw", help = "no chat template: complete the prompt as text" },
        { "max-tokens", short = "n", value = "N", type = "integer", min = 0, default = 512, help = "most tokens to generate" },
        { "temperature", short = "t", value = "T", type = "number", min = 0, default = 0, help = "0 = greedy" },
        { "top-k", value = "K", type = "integer", min = 0, help = "sample among the K most likely (0 = all)" },
        { "top-p", value = "P", type = "number", min = 0, max = 1, help = "nucleus sampling mass" },
        { "min-p", value = "P", type = "number", min = 0, max = 1, help = "drop tokens below P x the best" },
        { "repeat-penalty", value = "X", type = "number", help = "llama.cpp's repetition penalty (1 = off)" },
        { "presence-penalty", value = "X", type = "number", help = "OpenAI's presence penalty" },
        { "frequency-penalty", value = "X", type = "number", help = "OpenAI's frequency penalty" },
        { "seed", short = "s", value = "N", type = "integer", min = 0, help = "random seed (same seed, same output)" },
        { "stop", value = "TEXT", multiple = true, help = "stop before this text (repeatable)" },
        { "ignore-eos", help = "keep generating past the end-of-generation token" },
        { "ctx", value = "N", type = "integer", min = 1, help = "context size in tokens [default: min(model's, 4096)]" },
        { "threads", value = "N", type = "integer", min = 1, help = "CPU threads [default: all]" },
        { "device", value = "NAME", choices = { "auto", "cpu", "cuda" }, default = "auto", help = "where to run" },
        { "gpu", help = "run on the GPU (fail if there is none)" },
        { "vram-budget", value = "SIZE", type = "size", help = "most GPU memory apr may allocate (e.g. 22G)" },
        { "verbose", short = "v", help = "timings and token counts on stderr" },
    },
    examples = {
        "echo 'fn fibonacci(n: u64) -> u64 {' | apr pass",
        "apr pass --raw --prompt 'def quicksort(xs):' --max-tokens 128",
        "apr pass models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf < question.txt > answer.md",
    },
}

-- The model path: the argument, or the built-in default if it is installed.
function M.model_path(arg)
    if arg then return arg end
    local model = require "apr.model"
    local path = model.default_model_path()
    local f = io.open(path, "rb")
    if not f then
        cli.fail("no model given and the default model is not installed: run `make model`")
    end
    f:close()
    return path
end

-- Loads the model with the command-line options every command shares.
function M.load_model(opts)
    local path = M.model_path(opts[1])
    local m, err = require("apr.model").load(path, {
        device = opts.gpu and "cuda" or opts.device, threads = opts.threads, ctx = opts.ctx,
        vram_budget = opts.vram_budget,
    })
    if not m then cli.fail("%s", err) end
    return m
end

-- Sampling options from the command line, for generate/chat.
function M.generation_options(opts)
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

function M.report(s)
    local t = s.timings
    io.stderr:write(string.format(
        "prompt: %d tokens (%d reused) in %.2f s, %.1f tokens/s\n" ..
        "generated: %d tokens in %.2f s, %.1f tokens/s\nfinish: %s (%s), seed %d\n",
        s.n_prompt, s.n_cached, t.prompt_s or 0, t.prompt_tps or 0,
        s.n_generated, t.decode_s or 0, t.decode_tps or 0, s.finish_reason, s.stop_reason, s.seed))
end

function M.run(opts)
    local apr = require "apr"
    opts[1] = M.model_path(opts[1])   -- before reading stdin: fail fast
    local prompt = opts.prompt
    if not prompt then
        prompt = io.stdin:read("*a") or ""
    end
    if not opts.raw then prompt = prompt:gsub("%s+$", "") end
    if prompt == "" then cli.fail("the prompt is empty (give it on stdin or with --prompt)") end

    local m = M.load_model(opts)
    local gen_opts = M.generation_options(opts)
    local ok, gen = pcall(function()
        if opts.raw then return m:generate(prompt, gen_opts) end
        local messages = {}
        if opts.system then messages[1] = { role = "system", content = opts.system } end
        messages[#messages + 1] = { role = "user", content = prompt }
        return m:chat(messages, gen_opts)
    end)
    if not ok then cli.fail("%s", tostring(gen)) end
    M.print_notes(m)

    local out = io.stdout
    local last = ""
    local EPIPE = 32
    local ok2, err = pcall(function()
        for t in gen do
            if t.text ~= "" then
                local wrote, werr, code = out:write(t.text)
                if wrote then wrote, werr, code = out:flush() end
                -- A reader that has seen enough (`apr pass | head`) closed
                -- the pipe: stop generating, quietly, as other filters do.
                if not wrote and code == EPIPE then return end
                if not wrote then cli.fail("writing the answer: %s", tostring(werr)) end
                last = t.text
            end
        end
    end)
    if not ok2 then
        out:flush()
        if type(err) == "table" then error(err, 0) end   -- cli.fail's
        cli.fail("%s", tostring(err))
    end
    if require("apr._term").isatty(1) and last:sub(-1) ~= "\n" then out:write("\n") end
    out:flush()
    local s = gen.summary
    if opts.verbose then M.report(s) end
    if s.finish_reason == "interrupted" or apr.interrupted() then
        io.stderr:write("apr pass: interrupted\n")
        return 130
    end
    return 0
end

return M
