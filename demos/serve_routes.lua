-- serve_routes.lua — extra routes for `apr serve --routes demos/serve_routes.lua`.
--
-- A routes script runs once at startup with the router (`app`) and the
-- model. app:get/app:post add a route or replace a built-in one; handlers
-- get req (req.json is the decoded body, key order kept; req.params, the
-- :name parts of the path) and res (res:json, res:sse, res:error). The
-- model's generate and chat wait for the engine without blocking the
-- server, and give what apr.load(...):generate gives. A handler that raises
-- answers 500 with the message; the server carries on.
--
--   curl localhost:8080/v1/count-tokens -H 'Content-Type: application/json' -d '{"text": "Hello world"}'
--   curl -N localhost:8080/v1/story -H 'Content-Type: application/json' -d '{"topic": "a lighthouse"}'
local app, model = ...

-- How many tokens a text is, without generating anything.
app:post("/v1/count-tokens", function(req, res)
    local text = req.json.text
    if type(text) ~= "string" then
        res:error(400, "'text' must be a string", "text")
        return
    end
    res:json({ tokens = #model:tokenize(text), model = model.name })
end)

-- A short story about a topic, streamed as server-sent events: one event
-- per piece of text, then a summary.
app:post("/v1/story", function(req, res)
    local topic = req.json.topic or "the sea"
    local gen = model:chat({
        { role = "system", content = "You write very short stories." },
        { role = "user", content = "A story about " .. tostring(topic) },
    }, { max_tokens = tonumber(req.json.max_tokens) or 24, temperature = 0 })
    for t in gen do
        if not res:sse({ text = t.text }) then return end  -- the client left
    end
    res:sse({ done = true, finish_reason = gen.summary.finish_reason, tokens = gen.summary.n_generated })
    res:sse("[DONE]")
    res:finish()
end)

-- Overrides a built-in route: /health also says which model is serving.
app:get("/health", function(req, res)
    if not model.name then return res:json(503, { status = "loading" }) end
    res:json({ status = "ok", model = model.name })
end)

-- A route that fails, to show what a script error looks like (500 + message).
app:get("/v1/broken", function(req, res)
    error("this route is broken on purpose")
end)
