-- text/stop.lua — stop strings matched across token boundaries.
--
-- Generated text arrives a token at a time, and a stop string may span
-- several tokens ("</" then "end>"). Text that could still be the start of a
-- stop string is held back until the next token settles it, so a matched
-- stop string never reaches the output, not even in part.
--
--   local stop = require("apr.text.stop").new({ "\n\n", "</end>" })
--   local out, stopped = stop:push(piece)   -- text safe to emit now
--   local rest = stop:flush()               -- at the end: what was held back
local M = {}

local Stopper = {}
Stopper.__index = Stopper

-- new(list) -> matcher; empty strings are ignored (they would match at once).
function M.new(list)
    local stops = {}
    for _, s in ipairs(list or {}) do
        if type(s) ~= "string" then error("stop strings must be strings", 2) end
        if s ~= "" then stops[#stops + 1] = s end
    end
    return setmetatable({ stops = stops, pending = "" }, Stopper)
end

-- The length of the longest end of `text` that begins some stop string.
local function held_length(stops, text)
    local hold = 0
    for _, s in ipairs(stops) do
        for k = math.min(#s - 1, #text), hold + 1, -1 do
            if text:sub(-k) == s:sub(1, k) then
                hold = k
                break
            end
        end
    end
    return hold
end

-- push(text) -> the text that may be emitted now, and true when a stop
-- string matched (the text is then everything before it, and the rest of
-- the stream should be discarded).
function Stopper:push(text)
    local pending = self.pending .. text
    if #self.stops == 0 then return pending, false end
    local first
    for _, s in ipairs(self.stops) do
        local i = pending:find(s, 1, true)
        if i and (not first or i < first) then first = i end
    end
    if first then
        self.pending = ""
        return pending:sub(1, first - 1), true
    end
    local hold = held_length(self.stops, pending)
    self.pending = pending:sub(#pending - hold + 1)
    return pending:sub(1, #pending - hold), false
end

-- flush() -> what was held back (the stream ended without a match).
function Stopper:flush()
    local rest = self.pending
    self.pending = ""
    return rest
end

return M
