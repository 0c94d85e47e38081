-- mcp.host.policies: loading, checking and reloading the policy scripts
-- (recover, boot, backoff). Reload is all-or-nothing: the new set is loaded
-- beside the old one and replaces it only when every script loaded.
local M = {}

M.NAMES = { "recover", "boot", "backoff" }
M.REQUIRED = { recover = { "run" }, boot = { "run" }, backoff = {} }

local function check(name, mod)
    if type(mod) ~= "table" then
        return nil, string.format("policy %s must return a table, got %s", name, type(mod))
    end
    for _, fn in ipairs(M.REQUIRED[name] or {}) do
        if type(mod[fn]) ~= "function" then
            return nil, string.format("policy %s has no function %s (required)", name, fn)
        end
    end
    return mod
end

--- The loaded policy `name` (loading it on first use) | nil, message.
function M.get(name)
    local ok, mod = pcall(require, name)
    if not ok then return nil, tostring(mod) end
    return check(name, mod)
end

--- Loads every policy afresh. On success the new ones are in use and it
--- returns true; on any failure the old ones stay and it returns nil, message.
function M.reload()
    local old = {}
    for _, name in ipairs(M.NAMES) do
        old[name] = package.loaded[name]
        package.loaded[name] = nil
    end
    for _, name in ipairs(M.NAMES) do
        local mod, err = M.get(name)
        if not mod then
            for _, n in ipairs(M.NAMES) do package.loaded[n] = old[n] end
            return nil, err
        end
    end
    return true
end

return M
