-- apr pass [MODEL]: one prompt in, its completion out (a Unix filter).
local cli = require "apr.cli"
local generation = require "apr.cli.generation"

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
    options = generation.options {
        { "prompt", short = "p", value = "TEXT", help = "the prompt (instead of stdin)" },
        { "system", value = "TEXT", help = "a system message (chat template only)" },
        { "raw", help = "no chat template: complete the prompt as text" },
        { "max-tokens", default = 512 },
        "temperature", "top-k", "top-p", "min-p", "repeat-penalty", "presence-penalty", "frequency-penalty", "seed",
        { "stop", value = "TEXT", multiple = true, help = "stop before this text (repeatable)" },
        { "ignore-eos", help = "keep generating past the end-of-generation token" },
        "ctx", "kv-type", "threads", "device", "gpu", "vram-budget", "trace",
        { "verbose", short = "v", help = "timings and token counts on stderr" },
    },
    examples = {
        "echo 'fn fibonacci(n: u64) -> u64 {' | apr pass",
        "apr pass --raw --prompt 'def quicksort(xs):' --max-tokens 128",
        "apr pass models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf < question.txt > answer.md",
    },
}

function M.run(opts)
    local apr = require "apr"
    opts[1] = generation.model_path(opts[1])   -- before reading stdin: fail fast
    local prompt = opts.prompt
    if not prompt then
        prompt = io.stdin:read("*a") or ""
    end
    if not opts.raw then prompt = prompt:gsub("%s+$", "") end
    -- Nothing to complete is a mistake in how pass was called: a usage
    -- error (exit 2), as the README's rule has it.
    if prompt == "" then require("apr.cli.args").usage_error("the prompt is empty (give it on stdin or with --prompt)") end

    local m = generation.load_model(opts)
    local gen_opts = generation.generate_opts(opts)
    local ok, gen = pcall(function()
        if opts.raw then return m:generate(prompt, gen_opts) end
        local messages = {}
        if opts.system then messages[1] = { role = "system", content = opts.system } end
        messages[#messages + 1] = { role = "user", content = prompt }
        return m:chat(messages, gen_opts)
    end)
    if not ok then cli.fail("%s", tostring(gen)) end
    generation.print_notes(m)

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
    -- On a terminal the answer ends its line, so the shell's prompt (or an
    -- error message after half an answer) starts on a line of its own.
    local tty = require("apr.cli.term").isatty(1)
    if not ok2 then
        if tty and last ~= "" and last:sub(-1) ~= "\n" then out:write("\n") end
        out:flush()
        if type(err) == "table" then error(err, 0) end   -- cli.fail's
        cli.fail("%s", tostring(err))
    end
    if tty and last:sub(-1) ~= "\n" then out:write("\n") end
    out:flush()
    local s = gen.summary
    if opts.verbose then generation.report(s) end
    if s.finish_reason == "interrupted" or apr.interrupted() then
        io.stderr:write("apr pass: interrupted\n")
        return 130
    end
    return 0
end

return M
