-- bench/prompts.lua — the prompts every system is sent: apr's default set
-- of coding requests, or a file of the user's (--prompts FILE).
--
-- The default set mixes lengths (one line to a page of code) and kinds of
-- work (write, explain, fix, translate, test), in several languages, so
-- that prefill and decode both matter. Runs cycle through the set in
-- order, and run i sends every system the same prompt(s).
--
-- A file is JSON Lines ({"prompt": "..."} or {"messages": [...]} per line,
-- optionally "system"), a JSON array of those or of strings, or plain text
-- with one prompt per non-empty line.
local json = require "apr.json"
local utf8 = require "apr.text.utf8"

local M = {}

M.DEFAULT = {
    "Write a Python function that returns the n-th Fibonacci number using memoization, with a docstring.",
    "Implement binary search in Rust over a sorted slice of i64, returning Option<usize>. Include unit tests.",
    "Explain what this C code does and point out any undefined behaviour:\n\n" ..
        "int *f(void) {\n    int a[4] = {1, 2, 3, 4};\n    return a;\n}\n\nint main(void) {\n    int *p = f();\n" ..
        "    printf(\"%d\\n\", p[2]);\n}",
    "Write a SQL query that returns, for each customer, their three most recent orders. " ..
        "Tables: customers(id, name), orders(id, customer_id, created_at, total).",
    "Convert this JavaScript callback code to async/await:\n\n" ..
        "function load(url, cb) {\n  fetch(url).then(r => r.json()).then(d => cb(null, d)).catch(e => cb(e));\n}\n\n" ..
        "load('/api/items', function (err, items) {\n  if (err) { console.error(err); return; }\n" ..
        "  items.forEach(i => console.log(i.name));\n});",
    "Write a bash script that finds every file larger than 100 MB under a directory given as its argument " ..
        "and prints them sorted by size, human-readable.",
    "Implement an LRU cache class in Python with get and put in O(1), without using functools.",
    "What is the difference between a mutex and a semaphore? Give a short Go example of each.",
    "Fix the bug in this Python function, which should remove duplicates while keeping order:\n\n" ..
        "def dedupe(items):\n    seen = set()\n    for i, x in enumerate(items):\n        if x in seen:\n" ..
        "            del items[i]\n        seen.add(x)\n    return items",
    "Write a TypeScript type-safe event emitter class with on, off and emit, where each event name has its own payload type.",
    "Write a C function that reverses a singly linked list in place, and a main that tests it.",
    "Review this Go HTTP handler and suggest improvements:\n\n" ..
        "func handler(w http.ResponseWriter, r *http.Request) {\n    body, _ := ioutil.ReadAll(r.Body)\n" ..
        "    var req map[string]interface{}\n    json.Unmarshal(body, &req)\n    name := req[\"name\"].(string)\n" ..
        "    db.Exec(\"INSERT INTO users(name) VALUES('\" + name + \"')\")\n    w.Write([]byte(\"ok\"))\n}",
    "Write a Dockerfile for a Python 3.12 FastAPI app that uses a multi-stage build and runs as a non-root user.",
    "Implement quicksort in Haskell and explain why the simple list version is not in-place.",
    "Write pytest tests for a function parse_duration(s) that accepts strings like '1h30m', '45s', '2d' " ..
        "and returns seconds, including the error cases.",
    "Explain Big-O of the following and suggest a faster version:\n\n" ..
        "def has_pair(nums, target):\n    for i in range(len(nums)):\n        for j in range(len(nums)):\n" ..
        "            if i != j and nums[i] + nums[j] == target:\n                return True\n    return False",
    "Write a regular expression that matches ISO 8601 dates (YYYY-MM-DD) and explain each part.",
    "Implement a thread-safe bounded queue in Java using ReentrantLock and two Conditions.",
    "Write a Lua function that deep-copies a table, handling cycles.",
    "Translate this Python class to idiomatic Rust:\n\n" ..
        "class Stack:\n    def __init__(self):\n        self.items = []\n    def push(self, x):\n" ..
        "        self.items.append(x)\n    def pop(self):\n        if not self.items:\n" ..
        "            raise IndexError('pop from empty stack')\n        return self.items.pop()\n" ..
        "    def __len__(self):\n        return len(self.items)",
    "Write a Makefile for a C project with src/*.c, objects in build/, automatic header dependencies and a clean target.",
    "How do I profile a slow Python script? Show cProfile usage and how to read its output.",
    "Write a React component that fetches a list of users from /api/users and shows a loading state, " ..
        "an error state and the list.",
    "Implement Dijkstra's shortest path algorithm in C++ with a priority queue, on an adjacency list.",
}

local function fail(fmt, ...) require("apr.cli").fail(fmt, ...) end

local function to_messages(item, where)
    if type(item) == "string" then
        if not utf8.validate(item) then fail("%s: the prompt is not valid UTF-8", where) end
        return { { role = "user", content = item } }
    end
    if type(item) ~= "table" then fail("%s: a prompt must be a string or an object", where) end
    local msgs
    if type(item.messages) == "table" then
        msgs = {}
        for i, m in ipairs(item.messages) do
            if type(m) ~= "table" or type(m.role) ~= "string" or type(m.content) ~= "string" then
                fail("%s: message %d needs a string role and content", where, i)
            end
            if not utf8.validate(m.content) then fail("%s: message %d is not valid UTF-8", where, i) end
            msgs[i] = { role = m.role, content = m.content }
        end
        if #msgs == 0 then fail("%s: empty messages", where) end
    elseif type(item.prompt) == "string" then
        if not utf8.validate(item.prompt) then fail("%s: the prompt is not valid UTF-8", where) end
        msgs = { { role = "user", content = item.prompt } }
    else
        fail("%s: an object needs \"prompt\" (a string) or \"messages\" (a list)", where)
    end
    if type(item.system) == "string" then table.insert(msgs, 1, { role = "system", content = item.system }) end
    return msgs
end

-- load(path or nil) -> { source, list = { { messages = ... }, ... } }
function M.load(path)
    local list = {}
    if not path then
        for i, p in ipairs(M.DEFAULT) do list[i] = { messages = to_messages(p, "default prompt " .. i) } end
        return { source = "apr's default coding prompts", list = list }
    end
    local f, err = io.open(path, "rb")
    if not f then fail("cannot open the prompts file %s: %s", path, tostring(err)) end
    local text = f:read("*a")
    f:close()
    if not text then fail("cannot read the prompts file %s", path) end
    if #text > 64 * 2 ^ 20 then fail("%s: a prompts file of %d bytes is too large (64 MiB at most)", path, #text) end
    local first = text:match("^%s*(.)")
    if first == "[" then
        local v, jerr = json.decode(text)
        if type(v) ~= "table" then fail("%s: not valid JSON: %s", path, tostring(jerr)) end
        for i, item in ipairs(v) do list[i] = { messages = to_messages(item, string.format("%s: item %d", path, i)) } end
    elseif first == "{" then
        local n = 0
        for line in text:gmatch("[^\n]+") do
            n = n + 1
            if line:find("%S") then
                local v, jerr = json.decode(line)
                if v == nil then fail("%s: line %d is not valid JSON: %s", path, n, tostring(jerr)) end
                list[#list + 1] = { messages = to_messages(v, string.format("%s: line %d", path, n)) }
            end
        end
    else
        for line in text:gmatch("[^\n]+") do
            line = line:gsub("\r$", "")
            if line:find("%S") then list[#list + 1] = { messages = to_messages(line, path) } end
        end
    end
    if #list == 0 then fail("%s holds no prompts", path) end
    return { source = path, list = list }
end

-- render(set, path): every prompt's text under the model's own chat
-- template (ChatML when the file has none), with the generation prompt,
-- as `apr serve` renders it, for --api completions: then every server gets
-- the same text and no server parses the answer as a chat message.
function M.render(set, path)
    local f, err = require("apr.file").open(path)
    if not f then fail("%s", err) end
    local md = f.metadata
    local template = md["tokenizer.chat_template"]
    local tokens = md["tokenizer.ggml.tokens"]
    local function token(key)
        local id = md[key]
        return type(id) == "number" and type(tokens) == "table" and tokens[id + 1] or nil
    end
    local bos, eos = token("tokenizer.ggml.bos_token_id"), token("tokenizer.ggml.eos_token_id")
    f:close()
    if type(template) ~= "string" then template = require("apr.model").CHATML_TEMPLATE end
    local chat = require "apr.chat"
    for i, item in ipairs(set.list) do
        local text, rerr = chat.render(template, item.messages, { add_generation_prompt = true,
                                                                 bos_token = bos, eos_token = eos })
        if not text then fail("the chat template of %s failed on prompt %d: %s", path, i, tostring(rerr)) end
        item.text = text
    end
end

-- A fingerprint of the set: the SHA256 of its JSON, so reports can show
-- that two runs used the same prompts.
function M.fingerprint(set)
    local core = require "apr.core"
    local C, ffi = core.C, core.ffi
    local text = json.encode(set.list, { sort_keys = true })
    local h = ffi.gc(C.apr_sha256_new(), C.apr_sha256_free)
    C.apr_sha256_update(h, text, #text)
    local hex = ffi.new("char[65]")
    C.apr_sha256_final(h, nil, hex)
    return ffi.string(hex)
end

return M
