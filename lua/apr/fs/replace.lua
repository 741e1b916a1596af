-- fs/replace.lua — writing a file by replacing it whole.
--
-- The new content goes to PATH.tmp, which is renamed over PATH once it is
-- complete, so a crash or a full disk never leaves half a file. Only a
-- regular file (or a symbolic link, which the rename replaces, not its
-- target) is replaced: renamed over /dev/null by root, a file would take
-- the device's place.
local M = {}

-- check(path) -> true, or nil and why path must not be replaced.
function M.check(path)
    local st = require("luv").fs_lstat(path)
    if st and st.type ~= "file" and st.type ~= "link" then return nil, path .. ": not a regular file" end
    return true
end

-- write(path, text) -> true, or nil and a message naming the file.
function M.write(path, text)
    local ok, err = M.check(path)
    if not ok then return nil, err end
    local tmp = path .. ".tmp"
    local f, oerr = io.open(tmp, "wb")
    if not f then return nil, oerr end
    local wrote, werr = f:write(text)
    local closed, cerr = f:close()
    if not (wrote and closed) then
        os.remove(tmp)
        return nil, string.format("%s: %s", tmp, tostring(werr or cerr))
    end
    local renamed, rerr = os.rename(tmp, path)
    if not renamed then
        os.remove(tmp)
        return nil, rerr
    end
    return true
end

return M
