-- replace_spec.lua — files replaced whole, and only regular files.
local h = require "tests.lua.helpers"
local replace = require "apr.fs.replace"

describe("apr.fs.replace", function()
    local dir
    before_each(function() dir = h.tmpdir() end)
    after_each(function() h.rmtree(dir) end)

    local function ls()
        local p = assert(io.popen("ls -A " .. dir))
        local names = {}
        for name in p:lines() do names[#names + 1] = name end
        p:close()
        return names
    end

    it("writes a new file and replaces an old one, leaving no .tmp", function()
        local path = dir .. "/a.json"
        assert.is_true(replace.write(path, "one"))
        assert.is_true(replace.write(path, "two"))
        assert.equal("two", h.read_file(path))
        assert.same({ "a.json" }, ls())
    end)

    it("replaces a symbolic link, not what it points to", function()
        local target, link = dir .. "/target", dir .. "/link"
        assert.is_true(replace.write(target, "kept"))
        assert(os.execute(string.format("ln -s %s %s", target, link)) == 0)
        assert.is_true(replace.write(link, "new"))
        assert.equal("kept", h.read_file(target))
        assert.equal("file", require("luv").fs_lstat(link).type)
    end)

    it("refuses anything else, and says why in one line", function()
        local fifo = dir .. "/pipe"
        assert(os.execute("mkfifo " .. fifo) == 0)
        assert.same({ nil, fifo .. ": not a regular file" }, { replace.write(fifo, "x") })
        assert.same({ nil, dir .. ": not a regular file" }, { replace.write(dir, "x") })
        assert.equal("fifo", require("luv").fs_lstat(fifo).type)
        local ok, err = replace.write(dir .. "/no/such/dir/f", "x")
        assert.is_nil(ok)
        assert.truthy(err:find("No such file or directory", 1, true), err)
        assert.same({ "pipe" }, ls())
    end)
end)
