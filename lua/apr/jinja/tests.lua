-- jinja/tests.lua — jinja2's built-in tests (`x is defined`, `x is
-- mapping`, ...), each fn(value, args, kwargs, rt) -> boolean, answering
-- as jinja2/tests.py does on CPython's types.
local V = require "apr.jinja.value"
local methods = require "apr.jinja.methods"

local T = {}

local kind = V.kind

T.defined = function(v) return getmetatable(v) ~= V.Undefined end
T.undefined = function(v) return getmetatable(v) == V.Undefined end
T.none = function(v) return v == V.null end
T.boolean = function(v) return type(v) == "boolean" end
T["true"] = function(v) return v == true end
T["false"] = function(v) return v == false end
T.integer = function(v) return kind(v) == "int" end
T.float = function(v) return kind(v) == "float" end
-- numbers.Number includes bool
T.number = function(v) local k = kind(v) return k == "int" or k == "float" or k == "bool" end
T.string = function(v) return type(v) == "string" or getmetatable(v) == V.Markup end
T.mapping = function(v) return kind(v) == "dict" end
-- iter(v) works: jinja2's Undefined is iterable (as empty)
T.iterable = function(v) return V.is_iterable(v) end
-- has __len__ and __getitem__: dicts and Undefined count too
T.sequence = function(v)
    local k = kind(v)
    return k == "list" or k == "tuple" or k == "str" or k == "dict" or k == "undefined" or k == "markup"
end
-- Undefined defines __call__ (to fail), so callable() says yes
T.callable = function(v)
    local k = kind(v)
    return k == "callable" or k == "undefined" or (k == "loop" and v.node.recursive)
end
T.sameas = function(v, a)
    local other = a[1]
    if V.num(v) and V.num(other) and kind(v) == kind(other) and type(v) ~= "table" then
        return v == other
    end
    return rawequal(v, other)
end
T.escaped = function(v) return getmetatable(v) == V.Markup end
T.lower = function(v) return methods.STR.islower(V.str(v)) end
T.upper = function(v) return methods.STR.isupper(V.str(v)) end

local function mod(v, n)
    local r = V.arith("mod", v, n)
    return V.num(r)
end
T.divisibleby = function(v, a) return mod(v, a[1]) == 0 end
T.odd = function(v) return mod(v, 2) == 1 end
T.even = function(v) return mod(v, 2) == 0 end

T.eq = function(v, a) return V.eq(v, a[1]) end
T.ne = function(v, a) return not V.eq(v, a[1]) end
T.lt = function(v, a) return V.compare("lt", v, a[1]) end
T.le = function(v, a) return V.compare("lteq", v, a[1]) end
T.gt = function(v, a) return V.compare("gt", v, a[1]) end
T.ge = function(v, a) return V.compare("gteq", v, a[1]) end
T.equalto, T["=="] = T.eq, T.eq
T["!="] = T.ne
T.lessthan, T["<"] = T.lt, T.lt
T["<="] = T.le
T.greaterthan, T[">"] = T.gt, T.gt
T[">="] = T.ge
T["in"] = function(v, a) return V.contains(a[1], v) end

T.filter = function(v, a, k, rt) return type(v) == "string" and rt.filters[v] ~= nil end
T.test = function(v, a, k, rt) return type(v) == "string" and rt.tests[v] ~= nil end

return T
