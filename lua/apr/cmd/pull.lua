-- apr pull ORG/REPO: a model from the Hugging Face Hub into the hub cache
-- (shared with huggingface_hub), verified, usable offline afterwards as
-- ORG/REPO:QUANT by every command (docs/commands.md, lua/apr/hub/).
local cli = require "apr.cli"
local args = require "apr.cli.args"

local M = {}

M.spec = {
    usage = "apr pull ORG/REPO[:QUANT] [--quant Q | --file NAME] [--output PATH] [options]",
    summary = "Download a model from the Hugging Face Hub (resumable, verified, into the shared hub cache).",
    description =
        "Picks the GGUF file of the quantization (--quant Q4_K_M, case-insensitive; a split\n" ..
        "model's parts all come), downloads it over --connections parallel ranged\n" ..
        "connections into the Hugging Face hub cache ($HF_HUB_CACHE, or $HF_HOME/hub, default\n" ..
        "~/.cache/huggingface/hub, laid out as huggingface_hub lays it out), checks its\n" ..
        "SHA-256 against the hub's, and prints the local path. An interrupted download\n" ..
        "(Ctrl+C, a lost connection, a killed process) resumes where it stopped when run\n" ..
        "again. Afterwards ORG/REPO:QUANT names the file in every command, without the\n" ..
        "network. --output links the file (or copies it, across file systems) to PATH.\n" ..
        "Environment: HF_TOKEN (private and gated models), HF_ENDPOINT (a mirror),\n" ..
        "HF_HUB_OFFLINE=1 (no network: the cache only).",
    positional = { min = 1, max = 1, name = "ORG/REPO" },
    options = {
        { "quant", short = "q", value = "Q", help = "the quantization to fetch (Q4_K_M, Q8_0, ...)" },
        { "file", short = "f", value = "NAME", help = "a file of the repository by name, instead of --quant" },
        { "output", short = "o", value = "PATH", help = "also put the file at PATH (a folder for split models)" },
        { "revision", value = "REV", default = "main", help = "branch, tag or commit" },
        { "endpoint", value = "URL", help = "the hub [default: $HF_ENDPOINT or https://huggingface.co]" },
        { "connections", short = "c", value = "N", type = "integer", min = 1, max = 64, default = 8,
          help = "parallel connections per file" },
        { "chunk-size", value = "SIZE", type = "size", help = "bytes per ranged request [default: size/(8 x N), 1M..64M]" },
        { "timeout", value = "S", type = "number", min = 0.1, default = 30,
          help = "seconds a connection may receive nothing before it is retried" },
        { "retries", value = "N", type = "integer", min = 0, default = 8,
          help = "failed attempts in a row, per connection, before giving up" },
        { "force", help = "download again even if the cache has the file" },
        { "quiet", help = "no progress (errors and the path only)" },
        { "json", help = "print a JSON summary instead of the path" },
    },
    examples = {
        "apr pull bartowski/Qwen2.5-Coder-32B-Instruct-GGUF --quant Q4_K_M --output ./models/qwen2.5-coder-32b.gguf",
        "apr pull Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF:q8_0",
        "apr info bartowski/Qwen2.5-Coder-32B-Instruct-GGUF:Q4_K_M",
    },
}

function M.run(opts)
    local ref = require("apr.hub.ref").parse(opts[1])
    if not ref then
        args.usage_error("expected ORG/REPO (optionally :QUANT), got '%s'", opts[1])
    end
    if (ref.quant or ref.file) and (opts.quant or opts.file) then
        args.usage_error("give the quantization once: in %s or with --quant/--file", opts[1])
    end
    if opts.quant and opts.file then args.usage_error("--quant and --file exclude each other") end
    if ref.rev ~= "main" and opts.revision ~= "main" then
        args.usage_error("give the revision once: in %s or with --revision", opts[1])
    end
    local tty = require("apr.cli.term").isatty(2)
    local ui = require("apr.hub.progress").new({ quiet = opts.quiet, tty = tty })
    local summary, err, kind = require("apr.hub.pull").pull({
        repo = ref.repo,
        revision = ref.rev ~= "main" and ref.rev or opts.revision,
        quant = opts.quant or ref.quant,
        file = opts.file or ref.file,
        endpoint = opts.endpoint,
        connections = opts.connections,
        chunk = opts.chunk_size,
        stall = opts.timeout,
        retries = opts.retries,
        force = opts.force,
        output = opts.output,
    }, ui)
    if not summary then
        if kind == "cancelled" or require("apr.core").C.apr_interrupted() ~= 0 then
            io.stderr:write("apr pull: ", err, "\n")
            return 130
        end
        cli.fail("%s", err)
    end
    if opts.json then
        io.stdout:write(require("cjson").encode(summary), "\n")
    else
        io.stdout:write(summary.path, "\n")
    end
    return 0
end

return M
