-- openai_spec.lua — the official `openai` Python client (PyPI, installed by
-- `make deps` into .cache/pyenv) against `apr serve`: completions, chat,
-- streaming, logprobs, errors. The client's own parsing is the check that
-- the wire format is right.
local json = require "apr.json"
local serve = require "tests.lua.apr.server.serve_helper"

local PYTHON = ".cache/pyenv/bin/python"

local function has_openai()
    return os.execute(PYTHON .. " -c 'import openai' >/dev/null 2>&1") == 0
end

describe("the openai Python client against apr serve", function()
    it("completes, chats and streams", function()
        if not has_openai() then return pending("the openai package is not installed (make deps)") end
        local s = serve.start("--api-key sk-openai --parallel 2 --ctx 1024")
        local ok, err = pcall(function()
            local p = assert(io.popen(string.format("%s tests/lua/apr/server/openai_client.py %d sk-openai 2>&1",
                PYTHON, s.port)))
            local text = p:read("*a")
            p:close()
            local out = json.decode(text:match("([^\n]+)\n*$") or "")
            assert(out, "the client failed:\n" .. text)
            assert.same({ "tiny-q8_0" }, out.models)
            assert.equal("length", out.completion.finish_reason)
            assert.equal(5, out.completion.usage.completion_tokens)
            assert.equal(5, #out.completion.tokens)
            assert.equal(out.completion.text, out.completion_stream)
            assert.equal("assistant", out.chat.role)
            assert.equal(6, out.chat.usage.completion_tokens)
            assert.equal(6, out.chat.n_logprobs)
            assert.equal(out.chat.content, out.chat_stream.content)
            assert.equal("length", out.chat_stream.finish_reason)
            assert.equal(6, out.chat_stream.usage.completion_tokens)
            assert.equal(400, out.bad_request.status)
            assert.equal("messages", out.bad_request.param)
            assert.equal(401, out.auth.status)
        end)
        s:stop()
        assert(ok, err)
    end)
end)
