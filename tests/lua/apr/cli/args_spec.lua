-- args_spec.lua — one declaration of a command's options parses argv,
-- checks values and writes --help.
local args = require "apr.cli.args"

local SPEC = {
    usage = "apr demo FILE [options]",
    summary = "A demo command.",
    positional = { min = 1, max = 1, name = "FILE" },
    options = {
        { "json", help = "print JSON" },
        { "seed", short = "s", value = "N", type = "integer", min = 0, default = 0, help = "random seed" },
        { "layout", value = "NAME", choices = { "q4_k_m", "f16" }, help = "tensor types" },
        { "stop", value = "TEXT", multiple = true, help = "stop text" },
        { "max-body", value = "SIZE", type = "size", default = 8 * 2 ^ 20, help = "largest body" },
    },
    examples = { "apr demo x.gguf --seed 7" },
}

-- The usage error parse raises, as its message.
local function usage_error(argv)
    local ok, e = pcall(args.parse, SPEC, argv)
    assert.is_false(ok)
    assert.is_true(args.is_usage_error(e))
    return e.message
end

describe("apr.cli.args.parse", function()
    it("gives options by name (dashes to underscores) and positionals by index", function()
        local o = args.parse(SPEC, { "-s", "7", "m.gguf", "--stop=a", "--stop", "b", "--max-body", "1.5K", "--json" })
        assert.same({ "m.gguf", 7, { "a", "b" }, 1536, true }, { o[1], o.seed, o.stop, o.max_body, o.json })
    end)

    it("fills defaults and leaves other options out", function()
        local o = args.parse(SPEC, { "m.gguf" })
        assert.same({ 0, 8 * 2 ^ 20, {} }, { o.seed, o.max_body, o.stop })
        assert.is_nil(o.layout)
    end)

    it("names what is wrong in one line", function()
        assert.equal("unknown option '--bogus'", usage_error({ "m", "--bogus" }))
        assert.equal("--seed expects a whole number, got '1.5'", usage_error({ "m", "--seed", "1.5" }))
        assert.equal("--seed must be at least 0, got -1", usage_error({ "m", "--seed", "-1" }))
        assert.equal("--layout must be one of q4_k_m, f16, got 'q2'", usage_error({ "m", "--layout", "q2" }))
        assert.equal("--seed needs a value (N)", usage_error({ "m", "--seed" }))
        assert.equal("--json takes no value", usage_error({ "m", "--json=1" }))
        assert.equal("missing FILE", usage_error({}))
        assert.equal("unexpected argument 'n'", usage_error({ "m", "n" }))
    end)
end)

describe("apr.cli.args.help", function()
    it("lists every option with its choices and default, then the examples", function()
        local text = args.help("demo", SPEC)
        assert.truthy(text:find("^usage: apr demo FILE %[options%]\n\nA demo command%.\n\noptions:\n"), text)
        assert.truthy(text:find("\n  -s, --seed N               random seed [default: 0]\n", 1, true), text)
        assert.truthy(text:find("\n  --layout NAME              tensor types (q4_k_m|f16)\n", 1, true), text)
        assert.truthy(text:find("\n  --max-body SIZE            largest body [default: 8M]\n", 1, true), text)
        local tail = "\n  -h, --help                 show this help\n\nexamples:\n  apr demo x.gguf --seed 7\n"
        assert.equal(tail, text:sub(-#tail))
    end)

    it("keeps the options heading for a command whose only option is --help", function()
        local text = args.help("bare", { usage = "apr bare", summary = "Bare." })
        assert.equal("usage: apr bare\n\nBare.\n\noptions:\n  -h, --help                 show this help\n", text)
    end)
end)
