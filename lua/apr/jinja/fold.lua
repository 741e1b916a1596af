-- jinja/fold.lua — jinja2's constant folding, reproduced because it
-- changes output in one place.
--
-- jinja2's optimizer evaluates at compile time (as_const) every expression
-- that needs no variable and no call, and embeds the value when Python can
-- write it as a literal (has_safe_repr); a {{ }} output is printed while
-- compiling whatever its value. Folding looks up items through the
-- sandbox's getitem, whereas compiled code slices with Python's own
-- subscript: `{{ (1)[1:] }}` prints nothing, `{{ x[1:] }}` with x = 1 is a
-- TypeError. So apr folds the same expressions, bottom-up, with the same
-- short-circuits (`false and x` folds: x is never evaluated).
local runtime = require "apr.jinja.runtime"
local V = require "apr.jinja.value"
local json = require "apr.json"

local M = {}

-- Values jinja2 can write into the code it generates (has_safe_repr).
local function safe_repr(v, depth)
    if depth > 100 then return false end
    local k = V.kind(v)
    if k == "none" or k == "bool" or k == "int" or k == "float" or k == "str" or k == "markup" then return true end
    if k == "list" or k == "tuple" then
        for i = 1, #v do
            if not safe_repr(v[i], depth + 1) then return false end
        end
        return true
    end
    if k == "dict" then
        for _, key in ipairs(json.keys(v)) do
            if not (safe_repr(key, depth + 1) and safe_repr(v[key], depth + 1)) then return false end
        end
        return true
    end
    return false
end

local EXPRESSION = {
    const = true, name = true, list = true, tuple = true, dict = true, getattr = true, getitem = true,
    slice = true, call = true, filter = true, test = true, ["not"] = true, neg = true, pos = true,
    binop = true, concat = true, compare = true, ["and"] = true, ["or"] = true, condexpr = true,
}

-- M.fold(body, env) -> body, its foldable expressions replaced by consts.
function M.fold(body, env)
    local r = runtime.renderer(env, { max_steps = 100000, max_output = 1024 * 1024, max_macro_depth = 10 }, true)
    local empty = {}

    local function try_fold(node, any_value)
        if node.type == "const" then return node end
        local ok, v = pcall(r.eval, r, node, empty)
        if ok and v ~= nil and (any_value or safe_repr(v, 0)) then
            return { type = "const", line = node.line, value = v }
        end
        return node
    end

    local function visit(node)
        for key, child in pairs(node) do
            if type(child) == "table" then
                visit(child)
                if EXPRESSION[child.type] then
                    node[key] = try_fold(child, node.type == "output" and key == "expr")
                end
            end
        end
    end
    visit(body)
    return body
end

return M
