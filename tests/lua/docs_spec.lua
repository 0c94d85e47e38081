-- Every ```lua block of docs/LUA_API.md runs: examples as chunks (their
-- asserts are busted's), data shapes (a block that is a table) as expressions.
local root = debug.getinfo(1, "S").source:match("^@(.-)tests/lua/[^/]*$") or "./"
package.path = root .. "lua/?.lua;" .. root .. "lua/?/init.lua;" .. package.path
require "mcp.testing" -- installs the policy.NAME searcher

local function blocks(path)
    local f = assert(io.open(path, "r"))
    local text = f:read("a")
    f:close()
    local out, line = {}, 1
    local pos = 1
    while true do
        local s, e, body = text:find("```lua\n(.-)\n```", pos)
        if not s then break end
        local _, nl = text:sub(pos, s):gsub("\n", "")
        line = line + nl
        out[#out + 1] = { body = body, line = line }
        pos = e + 1
        local _, inner = text:sub(s + 1, e):gsub("\n", "")
        line = line + inner
    end
    return out
end

local DOC = root .. "docs/LUA_API.md"

describe("docs/LUA_API.md examples", function()
    local found = blocks(DOC)

    it("has examples, among them the mcp.testing ones", function()
        assert.is_true(#found >= 8, "found " .. #found)
    end)

    for _, b in ipairs(found) do
        it("runs the block at line " .. b.line, function()
            local name = "@docs/LUA_API.md:" .. b.line
            -- the examples' asserts are busted's, as in a spec
            local env = setmetatable({ assert = assert }, { __index = _G })
            local chunk, err
            if b.body:match("^%s*{") then
                chunk, err = load("return " .. b.body, name, "t", env)
                assert(chunk, err)
                assert.is_table(chunk())
            elseif b.body:match("^%s*return") or b.body:match("\nreturn [%w_]+%s*$") then
                chunk, err = load(b.body, name, "t", env)
                assert(chunk, err)
                assert.is_not_nil(chunk()) -- a policy file returns its table
            else
                chunk, err = load(b.body, name, "t", env)
                assert(chunk, err)
                chunk()
            end
        end)
    end
end)
