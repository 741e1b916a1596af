-- jinja/parser.lua — tokens -> a tree of statement and expression nodes.
--
-- The grammar and operator precedence are jinja2's (jinja2/parser.py), from
-- loosest to tightest binding:
--   a if c else b  >  or  >  and  >  not  >  == != < <= > >= in, not in
--   >  + -  >  ~  >  * / // %  >  **  >  unary - +  >  |filter, is test,
--   calls  >  .attr [subscript] (calls)  >  literals, names, ( )
-- Filters bind to the unary expression on their left: `a + b|trim` trims
-- only b, and `-x|abs` is abs(-x).
--
-- Every node is { type = ..., line = ... } plus its fields. Statements:
-- data, output, if, for, set, set_block, macro, call_block, filter_block,
-- with, break, continue, scope. Expressions: const, name, list, tuple,
-- dict, getattr, getitem, slice, call, filter, test, not, neg, pos, binop,
-- concat, compare, and, or, condexpr.
local json = require "apr.json"

local M = {}

local MAX_NESTING = 200

-- Tags jinja2 knows that this interpreter leaves out, named in the error.
local UNSUPPORTED = {
    extends = true, block = true, include = true, import = true, from = true,
    autoescape = true, trans = true, pluralize = true, ["do"] = true,
}

local Parser = {}
Parser.__index = Parser

function Parser:fail(msg, line, ...)
    error({ kind = "syntax", line = line or self:cur().line, message = string.format(msg, ...) }, 0)
end

function Parser:cur() return self.tokens[self.pos] end
function Parser:peek() return self.tokens[self.pos + 1] or self.tokens[#self.tokens] end

function Parser:next()
    local t = self.tokens[self.pos]
    if self.pos < #self.tokens then self.pos = self.pos + 1 end
    return t
end

local DESCRIBE = {
    variable_begin = "begin of print statement", variable_end = "end of print statement",
    block_begin = "begin of statement block", block_end = "end of statement block",
    eof = "end of template",
}

local function describe(t)
    if t.type == "name" or t.type == "string" or t.type == "integer" or t.type == "float" then
        return tostring(t.value)
    end
    return DESCRIBE[t.type] or t.value or t.type
end

-- Is the current token of this type (and, for names, this value)?
function Parser:is(type_, value)
    local t = self:cur()
    return t.type == type_ and (value == nil or t.value == value)
end

function Parser:skip_if(type_, value)
    if self:is(type_, value) then return self:next() end
end

function Parser:expect(type_, value)
    local t = self:cur()
    if t.type ~= type_ or (value ~= nil and t.value ~= value) then
        if t.type == "eof" then
            self:fail("unexpected end of template, expected '%s'", t.line, value or type_)
        end
        self:fail("expected token '%s', got '%s'", t.line, value or type_, describe(t))
    end
    return self:next()
end

function Parser:enter(line)
    self.depth = self.depth + 1
    if self.depth > MAX_NESTING then self:fail("template nested too deeply", line) end
end
function Parser:leave() self.depth = self.depth - 1 end

------------------------------------------------------------------ statements

-- Parses template data and tags until a block tag whose name is in
-- end_names (left as the current token) or the end of the template.
function Parser:subparse(end_names)
    local body = {}
    while true do
        local t = self:cur()
        if t.type == "data" then
            body[#body + 1] = { type = "data", value = t.value, line = t.line }
            self:next()
        elseif t.type == "variable_begin" then
            self:next()
            local expr = self:parse_tuple({ with_condexpr = true })
            body[#body + 1] = { type = "output", expr = expr, line = t.line }
            self:expect("variable_end")
        elseif t.type == "block_begin" then
            self:next()
            local name = self:cur()
            if end_names and name.type == "name" and end_names[name.value] then
                return body
            end
            local stmt = self:parse_statement()
            body[#body + 1] = stmt
            self:expect("block_end")
        elseif t.type == "eof" then
            if end_names then
                local wanted = {}
                for k in pairs(end_names) do wanted[#wanted + 1] = "'" .. k .. "'" end
                table.sort(wanted)
                self:fail("unexpected end of template, expected %s", t.line, table.concat(wanted, " or "))
            end
            return body
        else
            self:fail("unexpected '%s'", t.line, describe(t))
        end
    end
end

local function set_of(...)
    local s = {}
    for _, v in ipairs({ ... }) do s[v] = true end
    return s
end

-- The body of a block statement: "%}" then statements up to an end tag.
-- With drop, the end tag's name is consumed.
function Parser:parse_statements(end_names, drop)
    self:skip_if("colon")
    self:expect("block_end")
    self:enter()
    local body = self:subparse(end_names)
    self:leave()
    if drop then self:next() end
    return body
end

function Parser:parse_statement()
    local t = self:cur()
    if t.type ~= "name" then self:fail("tag name expected", t.line) end
    local f = self["parse_" .. t.value .. "_tag"]
    if f then return f(self) end
    if UNSUPPORTED[t.value] then
        self:fail("the '%s' tag is not supported", t.line, t.value)
    end
    self:fail("Encountered unknown tag '%s'.", t.line, t.value)
end

function Parser:parse_if_tag()
    local line = self:next().line
    local node = { type = "if", line = line }
    local result = node
    while true do
        node.test = self:parse_tuple({ with_condexpr = false })
        node.body = self:parse_statements(set_of("elif", "else", "endif"))
        node.else_ = {}
        local t = self:next()
        if t.value == "elif" then
            local nested = { type = "if", line = t.line }
            node.else_ = { nested }
            node = nested
        else
            if t.value == "else" then
                node.else_ = self:parse_statements(set_of("endif"), true)
            end
            break
        end
    end
    return result
end

function Parser:parse_for_tag()
    local line = self:next().line
    local target = self:parse_assign_target({ extra_end = { "in" } })
    self:expect("name", "in")
    local iter = self:parse_tuple({ with_condexpr = false, extra_end = { "recursive" } })
    local filter
    if self:skip_if("name", "if") then filter = self:parse_expression() end
    local recursive = self:skip_if("name", "recursive") ~= nil
    self.loops = self.loops + 1
    local body = self:parse_statements(set_of("endfor", "else"))
    self.loops = self.loops - 1
    local else_ = {}
    if self:next().value == "else" then
        else_ = self:parse_statements(set_of("endfor"), true)
    end
    return { type = "for", line = line, target = target, iter = iter, filter = filter,
        recursive = recursive, body = body, else_ = else_ }
end

function Parser:parse_set_tag()
    local line = self:next().line
    local target = self:parse_assign_target({ with_namespace = true })
    if self:skip_if("assign") then
        return { type = "set", line = line, target = target, expr = self:parse_tuple({ with_condexpr = true }) }
    end
    local filter = self:parse_filter(nil)
    local body = self:parse_statements(set_of("endset"), true)
    return { type = "set_block", line = line, target = target, filter = filter, body = body }
end

-- (a, b=1, ...) of a macro or call block.
function Parser:parse_signature(node)
    node.params, node.defaults = {}, {}
    self:expect("lparen")
    while not self:is("rparen") do
        if #node.params > 0 then self:expect("comma") end
        local name = self:expect("name")
        node.params[#node.params + 1] = name.value
        if self:skip_if("assign") then
            node.defaults[#node.params] = self:parse_expression()
        elseif next(node.defaults) then
            self:fail("non-default argument follows default argument", name.line)
        end
    end
    self:expect("rparen")
end

-- Parses a macro-like body, recording whether it mentions varargs, kwargs
-- or caller (jinja2 only accepts extra arguments when it does).
function Parser:parse_macro_body(node, end_name)
    local outer_loops = self.loops
    self.loops = 0
    self.names[#self.names + 1] = {}
    node.body = self:parse_statements(set_of(end_name), true)
    local seen = table.remove(self.names)
    self.loops = outer_loops
    node.uses_varargs, node.uses_kwargs, node.uses_caller = seen.varargs, seen.kwargs, seen.caller
end

function Parser:parse_macro_tag()
    local line = self:next().line
    local node = { type = "macro", line = line, name = self:expect("name").value }
    self:parse_signature(node)
    self:parse_macro_body(node, "endmacro")
    return node
end

function Parser:parse_call_tag()
    local line = self:next().line
    local node = { type = "call_block", line = line, params = {}, defaults = {} }
    if self:is("lparen") then self:parse_signature(node) end
    node.call = self:parse_expression()
    if node.call.type ~= "call" then self:fail("expected call", line) end
    self:parse_macro_body(node, "endcall")
    return node
end

function Parser:parse_filter_tag()
    local line = self:next().line
    local filter = self:parse_filter(nil, true)
    local body = self:parse_statements(set_of("endfilter"), true)
    return { type = "filter_block", line = line, filter = filter, body = body }
end

function Parser:parse_with_tag()
    local line = self:next().line
    local targets, values = {}, {}
    while not self:is("block_end") do
        if #targets > 0 then self:expect("comma") end
        targets[#targets + 1] = self:parse_assign_target()
        self:expect("assign")
        values[#values + 1] = self:parse_expression()
    end
    local body = self:parse_statements(set_of("endwith"), true)
    return { type = "with", line = line, targets = targets, values = values, body = body }
end

function Parser:parse_break_tag()
    local t = self:next()
    if self.loops == 0 then self:fail("'break' outside of a for loop", t.line) end
    return { type = "break", line = t.line }
end

function Parser:parse_continue_tag()
    local t = self:next()
    if self.loops == 0 then self:fail("'continue' outside of a for loop", t.line) end
    return { type = "continue", line = t.line }
end

-- Hugging Face's {% generation %} marks assistant text for training masks;
-- rendering just emits its body.
function Parser:parse_generation_tag()
    local line = self:next().line
    return { type = "scope", line = line, body = self:parse_statements(set_of("endgeneration"), true) }
end

------------------------------------------------------------------ assignment targets

function Parser:parse_assign_target(opts)
    opts = opts or {}
    local t = self:cur()
    if opts.with_namespace and t.type == "name" and self:peek().type == "dot" then
        self:next()
        self:next()
        local attr = self:expect("name")
        return { type = "nsref", line = t.line, name = t.value, attr = attr.value }
    end
    local target = self:parse_tuple({ simplified = true, extra_end = opts.extra_end })
    local function check(node)
        if node.type == "name" then
            if node.name == "true" or node.name == "false" or node.name == "none" then
                self:fail("can't assign to '%s'", node.line, node.name)
            end
        elseif node.type == "tuple" then
            for _, item in ipairs(node.items) do check(item) end
        else
            self:fail("can't assign to '%s'", node.line, node.type)
        end
    end
    check(target)
    return target
end

------------------------------------------------------------------ expressions

function Parser:parse_expression(with_condexpr)
    if with_condexpr == false then return self:parse_or() end
    return self:parse_condexpr()
end

function Parser:parse_condexpr()
    local line = self:cur().line
    self:enter(line)
    local expr1 = self:parse_or()
    while self:skip_if("name", "if") do
        local test = self:parse_or()
        local expr2
        if self:skip_if("name", "else") then expr2 = self:parse_condexpr() end
        expr1 = { type = "condexpr", line = line, test = test, expr1 = expr1, expr2 = expr2 }
        line = self:cur().line
    end
    self:leave()
    return expr1
end

-- operand (operator operand)*, grouped to the left as jinja2 does:
-- operator(self) consumes an operator and returns the node's type and op,
-- or returns nil when none follows.
function Parser:left_chain(operand, operator)
    local line = self:cur().line
    local left = operand(self)
    while true do
        local kind, op = operator(self)
        if not kind then return left end
        left = { type = kind, op = op, line = line, left = left, right = operand(self) }
        line = self:cur().line
    end
end

-- The operators of a chain: a keyword ("or"), or binops among a set of tokens.
local function keyword(word)
    return function(self) if self:skip_if("name", word) then return word end end
end
local function binops(...)
    local ops = set_of(...)
    return function(self) if ops[self:cur().type] then return "binop", self:next().type end end
end

local OR, AND = keyword("or"), keyword("and")
local ADD_SUB, MUL_DIV, POW = binops("add", "sub"), binops("mul", "div", "floordiv", "mod"), binops("pow")

function Parser:parse_or() return self:left_chain(Parser.parse_and, OR) end
function Parser:parse_and() return self:left_chain(Parser.parse_not, AND) end

function Parser:parse_not()
    if self:is("name", "not") then
        local line = self:next().line
        self:enter(line)
        local node = { type = "not", line = line, node = self:parse_not() }
        self:leave()
        return node
    end
    return self:parse_compare()
end

local COMPARE_OPS = set_of("eq", "ne", "lt", "lteq", "gt", "gteq")

function Parser:parse_compare()
    local line = self:cur().line
    local expr = self:parse_math1()
    local ops = {}
    while true do
        local t = self:cur()
        if COMPARE_OPS[t.type] then
            self:next()
            ops[#ops + 1] = { op = t.type, expr = self:parse_math1() }
        elseif self:skip_if("name", "in") then
            ops[#ops + 1] = { op = "in", expr = self:parse_math1() }
        elseif self:is("name", "not") and self:peek().type == "name" and self:peek().value == "in" then
            self:next()
            self:next()
            ops[#ops + 1] = { op = "notin", expr = self:parse_math1() }
        else
            break
        end
    end
    if #ops == 0 then return expr end
    return { type = "compare", line = line, expr = expr, ops = ops }
end

function Parser:parse_math1() return self:left_chain(Parser.parse_concat, ADD_SUB) end

function Parser:parse_concat()
    local line = self:cur().line
    local items = { self:parse_math2() }
    while self:skip_if("tilde") do
        items[#items + 1] = self:parse_math2()
    end
    if #items == 1 then return items[1] end
    return { type = "concat", line = line, items = items }
end

function Parser:parse_math2() return self:left_chain(Parser.parse_pow, MUL_DIV) end
function Parser:parse_pow() return self:left_chain(Parser.parse_unary, POW) end

function Parser:parse_unary(with_filter)
    local t = self:cur()
    local node
    self:enter(t.line)
    if t.type == "sub" then
        self:next()
        node = { type = "neg", line = t.line, node = self:parse_unary(false) }
    elseif t.type == "add" then
        self:next()
        node = { type = "pos", line = t.line, node = self:parse_unary(false) }
    else
        node = self:parse_primary()
    end
    node = self:parse_postfix(node)
    if with_filter ~= false then node = self:parse_filter_expr(node) end
    self:leave()
    return node
end

function Parser:parse_primary()
    local t = self:cur()
    if t.type == "name" then
        self:next()
        local v = t.value
        if v == "true" or v == "True" then return { type = "const", line = t.line, value = true } end
        if v == "false" or v == "False" then return { type = "const", line = t.line, value = false } end
        if v == "none" or v == "None" then return { type = "const", line = t.line, value = json.null } end
        local seen = self.names[#self.names]
        if seen then seen[v] = true end
        return { type = "name", line = t.line, name = v }
    elseif t.type == "string" then
        self:next()
        local parts = { t.value }
        while self:is("string") do parts[#parts + 1] = self:next().value end
        return { type = "const", line = t.line, value = table.concat(parts) }
    elseif t.type == "integer" then
        self:next()
        return { type = "const", line = t.line, value = t.value }
    elseif t.type == "float" then
        self:next()
        return { type = "const", line = t.line, value = t.value, is_float = true }
    elseif t.type == "lparen" then
        self:next()
        local node = self:parse_tuple({ with_condexpr = true, explicit_parentheses = true })
        self:expect("rparen")
        return node
    elseif t.type == "lbracket" then
        return self:parse_list()
    elseif t.type == "lbrace" then
        return self:parse_dict()
    end
    if t.type == "eof" then self:fail("unexpected end of template", t.line) end
    self:fail("unexpected '%s'", t.line, describe(t))
end

-- A comma-separated sequence: a tuple if there is a comma, else the single
-- expression. opts: simplified (names and literals only), with_condexpr,
-- extra_end (names ending it), explicit_parentheses (allow "()").
function Parser:parse_tuple(opts)
    local line = self:cur().line
    local parse
    if opts.simplified then
        parse = function() return self:parse_primary() end
    elseif opts.with_condexpr == false then
        parse = function() return self:parse_expression(false) end
    else
        parse = function() return self:parse_expression() end
    end
    local items, is_tuple = {}, false
    while true do
        if #items > 0 then self:expect("comma") end
        if self:is_tuple_end(opts.extra_end) then break end
        items[#items + 1] = parse()
        if self:is("comma") then is_tuple = true else break end
        line = self:cur().line
    end
    if not is_tuple then
        if #items > 0 then return items[1] end
        if not opts.explicit_parentheses then
            self:fail("Expected an expression, got '%s'", nil, describe(self:cur()))
        end
    end
    return { type = "tuple", line = line, items = items }
end

function Parser:is_tuple_end(extra_end)
    local t = self:cur()
    if t.type == "variable_end" or t.type == "block_end" or t.type == "rparen" then return true end
    if extra_end and t.type == "name" then
        for _, name in ipairs(extra_end) do
            if t.value == name then return true end
        end
    end
    return false
end

function Parser:parse_list()
    local t = self:expect("lbracket")
    local items = {}
    while not self:is("rbracket") do
        if #items > 0 then self:expect("comma") end
        if self:is("rbracket") then break end
        items[#items + 1] = self:parse_expression()
    end
    self:expect("rbracket")
    return { type = "list", line = t.line, items = items }
end

function Parser:parse_dict()
    local t = self:expect("lbrace")
    local keys, values = {}, {}
    while not self:is("rbrace") do
        if #keys > 0 then self:expect("comma") end
        if self:is("rbrace") then break end
        keys[#keys + 1] = self:parse_expression()
        self:expect("colon")
        values[#values + 1] = self:parse_expression()
    end
    self:expect("rbrace")
    return { type = "dict", line = t.line, keys = keys, values = values }
end

function Parser:parse_postfix(node)
    while true do
        local t = self:cur().type
        if t == "dot" or t == "lbracket" then
            node = self:parse_subscript(node)
        elseif t == "lparen" then
            node = self:parse_call(node)
        else
            return node
        end
    end
end

function Parser:parse_filter_expr(node)
    while true do
        local t = self:cur()
        if t.type == "pipe" then
            node = self:parse_filter(node)
        elseif t.type == "name" and t.value == "is" then
            node = self:parse_test(node)
        elseif t.type == "lparen" then
            node = self:parse_call(node)
        else
            return node
        end
    end
end

function Parser:parse_subscript(node)
    local t = self:next()
    if t.type == "dot" then
        local attr = self:next()
        if attr.type == "name" then
            return { type = "getattr", line = t.line, node = node, attr = attr.value }
        elseif attr.type ~= "integer" then
            self:fail("expected name or number", attr.line)
        end
        return { type = "getitem", line = t.line, node = node,
            key = { type = "const", line = attr.line, value = attr.value } }
    end
    local args = {}
    while not self:is("rbracket") do
        if #args > 0 then self:expect("comma") end
        args[#args + 1] = self:parse_subscribed()
    end
    self:expect("rbracket")
    local key = args[1]
    if #args ~= 1 then key = { type = "tuple", line = t.line, items = args } end
    return { type = "getitem", line = t.line, node = node, key = key }
end

function Parser:parse_subscribed()
    local line = self:cur().line
    local args = {}
    if self:is("colon") then
        self:next()
        args[1] = false
    else
        local node = self:parse_expression()
        if not self:is("colon") then return node end
        self:next()
        args[1] = node
    end
    if self:is("colon") then
        args[2] = false
    elseif not self:is("rbracket") and not self:is("comma") then
        args[2] = self:parse_expression()
    else
        args[2] = false
    end
    if self:is("colon") then
        self:next()
        if not self:is("rbracket") and not self:is("comma") then
            args[3] = self:parse_expression()
        end
    end
    return { type = "slice", line = line, start = args[1] or nil, stop = args[2] or nil, step = args[3] }
end

-- (args, kw=..., *dyn, **dynkw)
function Parser:parse_call_args()
    local t = self:expect("lparen")
    local args, kwargs = {}, {}
    local dyn_args, dyn_kwargs
    local require_comma = false
    local function ensure(ok)
        if not ok then self:fail("invalid syntax for function call expression", t.line) end
    end
    while not self:is("rparen") do
        if require_comma then
            self:expect("comma")
            if self:is("rparen") then break end
        end
        if self:is("mul") then
            ensure(dyn_args == nil and dyn_kwargs == nil)
            self:next()
            dyn_args = self:parse_expression()
        elseif self:is("pow") then
            ensure(dyn_kwargs == nil)
            self:next()
            dyn_kwargs = self:parse_expression()
        elseif self:is("name") and self:peek().type == "assign" then
            ensure(dyn_kwargs == nil)
            local key = self:next().value
            self:next()
            kwargs[#kwargs + 1] = { name = key, value = self:parse_expression() }
        else
            ensure(dyn_args == nil and dyn_kwargs == nil and #kwargs == 0)
            args[#args + 1] = self:parse_expression()
        end
        require_comma = true
    end
    self:expect("rparen")
    return args, kwargs, dyn_args, dyn_kwargs
end

function Parser:parse_call(node)
    local line = self:cur().line
    local args, kwargs, dyn_args, dyn_kwargs = self:parse_call_args()
    return { type = "call", line = line, node = node, args = args, kwargs = kwargs,
        dyn_args = dyn_args, dyn_kwargs = dyn_kwargs }
end

function Parser:dotted_name()
    local name = self:expect("name").value
    while self:is("dot") do
        self:next()
        name = name .. "." .. self:expect("name").value
    end
    return name
end

function Parser:parse_filter(node, start_inline)
    while self:is("pipe") or start_inline do
        if not start_inline then self:next() end
        local line = self:cur().line
        local name = self:dotted_name()
        local args, kwargs, dyn_args, dyn_kwargs = {}, {}, nil, nil
        if self:is("lparen") then args, kwargs, dyn_args, dyn_kwargs = self:parse_call_args() end
        node = { type = "filter", line = line, node = node, name = name, args = args,
            kwargs = kwargs, dyn_args = dyn_args, dyn_kwargs = dyn_kwargs }
        start_inline = false
    end
    return node
end

local TEST_ARG_START = set_of("name", "string", "integer", "float", "lparen", "lbracket", "lbrace")

function Parser:parse_test(node)
    local t = self:next()
    local negated = self:skip_if("name", "not") ~= nil
    local name = self:dotted_name()
    local args, kwargs, dyn_args, dyn_kwargs = {}, {}, nil, nil
    local c = self:cur()
    if c.type == "lparen" then
        args, kwargs, dyn_args, dyn_kwargs = self:parse_call_args()
    elseif TEST_ARG_START[c.type] and not (c.type == "name" and (c.value == "else" or c.value == "or" or c.value == "and")) then
        if c.type == "name" and c.value == "is" then self:fail("You cannot chain multiple tests with is", c.line) end
        args = { self:parse_postfix(self:parse_primary()) }
    end
    node = { type = "test", line = t.line, node = node, name = name, args = args,
        kwargs = kwargs, dyn_args = dyn_args, dyn_kwargs = dyn_kwargs }
    if negated then node = { type = "not", line = t.line, node = node } end
    return node
end

------------------------------------------------------------------ name checks

-- jinja2 rejects a filter or test it does not know when compiling, except
-- inside an if statement or an inline if (its "soft" frames), where the
-- error waits until the expression runs. A for loop, macro, call, filter
-- or set block, or with opens a new frame that is not soft.
local NEW_FRAME = set_of("for", "macro", "call_block", "filter_block", "with", "set_block", "scope")

local function check_names(node, soft, known)
    if type(node) ~= "table" then return end
    local t = node.type
    if t == "filter" or t == "test" then
        local names = t == "filter" and known.filters or known.tests
        if not names[node.name] and not soft then
            error({ kind = "syntax", line = node.line,
                message = string.format("No %s named '%s'.", t, node.name) }, 0)
        end
    end
    if t == "for" then
        check_names(node.iter, soft, known)
        check_names(node.filter, false, known)
        check_names(node.body, false, known)
        check_names(node.else_, false, known)
        return
    elseif t == "with" then
        check_names(node.values, soft, known)
        check_names(node.body, false, known)
        return
    elseif t == "call_block" then
        check_names(node.call, soft, known)
        check_names(node.body, false, known)
        check_names(node.defaults, false, known)
        return
    end
    local child_soft = soft
    if t == "if" or t == "condexpr" then child_soft = true
    elseif NEW_FRAME[t] then child_soft = false end
    for _, v in pairs(node) do
        if type(v) == "table" then check_names(v, child_soft, known) end
    end
end

------------------------------------------------------------------ entry

-- M.parse(tokens, filters, tests) -> the template's statement list. filters
-- and tests are the name sets the environment has.
function M.parse(tokens, filters, tests)
    local p = setmetatable({
        tokens = tokens, pos = 1, depth = 0, loops = 0, names = {},
    }, Parser)
    local body = p:subparse(nil)
    check_names(body, false, { filters = filters, tests = tests })
    return body
end

return M
