-- mcp.host.policies: loading, checking and reloading the policy scripts
-- (SPEC §7, §11), required as "policy.NAME" (src/lua/policy.c searches the
-- operator's [policy] dir, then the built-in ones). Reload is
-- all-or-nothing: the new set is loaded beside the old one and replaces it
-- only when every script loaded.
local M = {}

M.NAMES = { "recover", "boot", "backoff", "supervise" }
M.REQUIRED = { recover = { "run" }, boot = { "run" }, backoff = {}, supervise = { "on_exit" } }

local function module_of(name) return "policy." .. name end

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
    local ok, mod = pcall(require, module_of(name))
    if not ok then return nil, tostring(mod) end
    return check(name, mod)
end

-- Every module a reload must load afresh: the policies and the built-in
-- versions an operator's policy may wrap.
local function reloaded_modules()
    local out = {}
    for _, name in ipairs(M.NAMES) do
        out[#out + 1] = module_of(name)
        out[#out + 1] = "policy.builtin." .. name
    end
    return out
end

--- Loads every policy afresh. On success the new ones are in use and it
--- returns true; on any failure the old ones stay and it returns nil, message.
function M.reload()
    local old = {}
    local modules = reloaded_modules()
    for _, m in ipairs(modules) do
        old[m] = package.loaded[m]
        package.loaded[m] = nil
    end
    for _, name in ipairs(M.NAMES) do
        local mod, err = M.get(name)
        if not mod then
            for _, m in ipairs(modules) do package.loaded[m] = old[m] end
            return nil, err
        end
    end
    return true
end

return M
