-- terminal.lua — runs a command on a real terminal (tmux, on a socket of
-- its own) for the specs of what apr does there: keys sent as a user types
-- them (send-keys), the screen read back (capture-pane).
--
--   local t = assert(terminal.start("./apr chat tests/fixtures/models/tiny-q8_0.gguf"))
--   t:wait_for(">>> ")
--   t:keys("C-c")
--   local screen = t:screen()
--   t:close()
local M = {}

local function sh(cmd)
    local p = assert(io.popen(cmd .. " 2>&1"))
    local out = p:read("*a")
    p:close()
    return out
end

local function sleep(ms) os.execute(string.format("sleep %.3f", ms / 1000)) end

local T = {}
T.__index = T

-- available() -> true, or false and why (the specs then say pending).
function M.available()
    if sh("command -v tmux") == "" then return false, "tmux is not installed (make deps installs it)" end
    return true
end

local n = 0
-- start(command) -> terminal: command runs in a shell on an 80x24 terminal;
-- when it ends, the shell prints "[exit N]" and waits to be closed.
function M.start(command)
    n = n + 1
    local self = setmetatable({ socket = string.format("apr-spec-%d-%d", tonumber(sh("echo $$")), n) }, T)
    local script = command .. "; printf '[exit %s]' $?; sleep 600"
    sh(string.format("tmux -L %s new-session -d -s t -x 80 -y 24 %q", self.socket, script))
    return self
end

function T:screen()
    return sh(string.format("tmux -L %s capture-pane -p -t t", self.socket))
end

-- Waits until the screen shows text (plain, not a pattern; trailing spaces
-- do not count, as capture-pane drops them); the screen, or nil and the
-- screen after timeout_s.
function T:wait_for(text, timeout_s)
    text = text:gsub("%s+$", "")
    local screen
    for _ = 1, math.floor((timeout_s or 20) * 20) do
        screen = self:screen()
        if screen:find(text, 1, true) then return screen end
        sleep(50)
    end
    return nil, screen
end

-- keys(...): tmux key names ("C-c", "Enter") or literal text (-l).
function T:keys(...)
    for _, k in ipairs({ ... }) do
        if k:match("^[CM]%-.$") or k == "Enter" or k == "C-d" then
            sh(string.format("tmux -L %s send-keys -t t %s", self.socket, k))
        else
            sh(string.format("tmux -L %s send-keys -t t -l %q", self.socket, k))
        end
    end
end

function T:close()
    sh(string.format("tmux -L %s kill-server", self.socket))
end

return M
