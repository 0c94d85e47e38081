-- mcp.policy_path: `require "policy.NAME"` outside the agent — in busted
-- specs through mcp.testing, and in `mcp-agent test` — resolved as the
-- daemon resolves it (src/lua/policy.c): the operator's policy dir first,
-- then the built-in policies; "policy.builtin.NAME" only the built-in one;
-- each policy in its own environment over mcp.sandbox's curated globals,
-- text only; a policy that requires itself is an error naming its file.
--
-- Directories: MCP_POLICY_DIR (the operator's, optional) and
-- MCP_BUILTIN_POLICY_DIR, else the policies/ folder beside this library's
-- lua/ (the same in the source tree and under share/mcp-agent/).
local M = {}

local function library_root()
    local source = debug.getinfo(1, "S").source
    local dir = source:match("^@(.*)/lua/mcp/[^/]*$")
    return dir or "."
end

M.operator_dir = os.getenv("MCP_POLICY_DIR")
M.builtin_dir = os.getenv("MCP_BUILTIN_POLICY_DIR") or (library_root() .. "/policies")

local loading = {}

local function readable(path)
    local f = io.open(path, "r")
    if f then f:close() return true end
    return false
end

local function searcher(module)
    local name = module:match("^policy%.(.*)$")
    if not name then return nil end
    local only_builtin = false
    local inner = name:match("^builtin%.(.*)$")
    if inner then name, only_builtin = inner, true end
    if not name:match("^[%w_-]+$") then
        return string.format("\n\tno policy '%s' (a policy name has letters, digits, '_' and '-')", module)
    end
    local dirs = { M.operator_dir or false, M.builtin_dir }
    if only_builtin then dirs[1] = false end
    local tried = {}
    for i = 1, 2 do
        local dir = dirs[i]
        if dir and dir ~= "" then
            local path = dir .. "/" .. name .. ".lua"
            if readable(path) then
                if loading[module] then
                    error(string.format('%s: policy %s requires itself; to build on the built-in policy, '
                        .. 'require "policy.builtin.%s"', path, module, name), 0)
                end
                return function(mod_name, file)
                    local env = setmetatable({}, { __index = require("mcp.sandbox").globals })
                    local chunk, err = loadfile(file, "t", env)
                    if not chunk then error(err, 0) end
                    loading[mod_name] = true
                    local ok, result = pcall(chunk, mod_name)
                    loading[mod_name] = nil
                    if not ok then error(result, 0) end
                    if result == nil then error(file .. ": a policy must return a table of functions", 0) end
                    return result
                end, path
            end
            tried[#tried + 1] = "\n\tno file '" .. path .. "'"
        end
    end
    return table.concat(tried)
end

--- Adds the searcher (once) after the preload searcher.
function M.install()
    for _, s in ipairs(package.searchers) do
        if s == searcher then return end
    end
    table.insert(package.searchers, 2, searcher)
end

return M
