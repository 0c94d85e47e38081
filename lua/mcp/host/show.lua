-- mcp.host.show: a stored service definition printed back as the SPEC §4
-- TOML document that `deploy` accepts unchanged (host ports are the
-- registry's own and are not part of a definition).
local M = {}

local ESCAPES = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\t"] = "\\t", ["\n"] = "\\n",
                  ["\f"] = "\\f", ["\r"] = "\\r" }

--- A TOML basic string.
function M.string(s)
    return '"' .. tostring(s):gsub('[%c"\\]', function(c)
        return ESCAPES[c] or string.format("\\u%04X", c:byte())
    end) .. '"'
end

local function array(list)
    local parts = {}
    for i, v in ipairs(list) do parts[i] = M.string(v) end
    return "[" .. table.concat(parts, ", ") .. "]"
end

--- Seconds as a Go-style duration the parser reads back: "10s", "1500ms".
function M.duration(seconds)
    local ms = math.floor(seconds * 1000 + 0.5)
    if ms % 1000 == 0 then return string.format('"%ds"', ms // 1000) end
    return string.format('"%dms"', ms)
end

local STRINGS = { "image", "network", "user", "restart", "desired_state" }
local LISTS = { "ports", "volumes", "cmd", "env" }

local function component_lines(out, c)
    out[#out + 1] = ""
    out[#out + 1] = "[[components]]"
    out[#out + 1] = "name = " .. M.string(c.name)
    for _, k in ipairs(STRINGS) do
        if c[k] ~= nil then out[#out + 1] = k .. " = " .. M.string(c[k]) end
    end
    for _, k in ipairs(LISTS) do
        if c[k] and #c[k] > 0 then out[#out + 1] = k .. " = " .. array(c[k]) end
    end
    local h = c.health
    if h then
        out[#out + 1] = ""
        out[#out + 1] = "[components.health]"
        out[#out + 1] = "check = " .. M.string(h.check)
        if h.port then out[#out + 1] = "port = " .. tostring(math.tointeger(h.port) or h.port) end
        if h.path then out[#out + 1] = "path = " .. M.string(h.path) end
        if h.interval then out[#out + 1] = "interval = " .. M.duration(h.interval) end
        if h.timeout then out[#out + 1] = "timeout = " .. M.duration(h.timeout) end
        if h.failure_threshold then out[#out + 1] = "failure_threshold = " .. tostring(h.failure_threshold) end
    end
    for _, r in ipairs(c.routes or {}) do
        out[#out + 1] = ""
        out[#out + 1] = "[[components.routes]]"
        out[#out + 1] = "name = " .. M.string(r.name)
        if r.port then out[#out + 1] = "port = " .. tostring(r.port) end
        if r.mode then out[#out + 1] = "mode = " .. M.string(r.mode) end
        if r.hostname then out[#out + 1] = "hostname = " .. M.string(r.hostname) end
    end
end

--- The TOML document of a service table (registry.service's shape).
function M.toml(svc)
    local out = { "# " .. svc.name .. ": as stored in the registry (mcp-agent show)",
                  "name = " .. M.string(svc.name), "active = " .. tostring(svc.active ~= false) }
    for _, c in ipairs(svc.components or {}) do component_lines(out, c) end
    return table.concat(out, "\n") .. "\n"
end

function M.show(agent, cmd)
    local name = cmd.args[1]
    local svc = agent.registry.service(name)
    if not svc then
        io.stderr:write("mcp-agent: show: no such service: ", name, "\n")
        return 2
    end
    io.stdout:write(M.toml(svc))
    return 0
end

return M
