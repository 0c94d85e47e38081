-- mcp.host.preview: `deploy --dry-run FILE…`: per component, what the
-- definition changes against the registry (new, changed fields old → new,
-- unchanged, removed) and what deploy would then do to its container. Reads
-- the registry and asks the runtime read-only questions (inspect,
-- image_exists); stores, pulls, runs and removes nothing.
local lifecycle = require("mcp.lifecycle")

local M = {}

local FIELDS = { "image", "network", "user", "restart", "desired_state", "ports", "volumes", "cmd", "env" }
local HEALTH = { "check", "port", "path", "interval", "timeout", "failure_threshold" }
local ROUTE = { "port", "mode", "hostname" }

local function text(v)
    if v == nil then return "(none)" end
    if type(v) == "table" then
        local parts = {}
        for i, x in ipairs(v) do parts[i] = string.format("%q", tostring(x)) end
        return "[" .. table.concat(parts, ", ") .. "]"
    end
    if type(v) == "string" then return string.format("%q", v) end
    return tostring(v)
end

local function same(a, b)
    if type(a) == "table" and type(b) == "table" then
        if #a ~= #b then return false end
        for i = 1, #a do if a[i] ~= b[i] then return false end end
        return true
    end
    if (type(a) == "table" and #a == 0 and b == nil) or (type(b) == "table" and #b == 0 and a == nil) then
        return true
    end
    return a == b
end

--- The changed fields of a component, as { { field=, old=, new= } … } in a stable order.
function M.changes(old, new)
    local out = {}
    local function cmp(field, a, b)
        if not same(a, b) then out[#out + 1] = { field = field, old = a, new = b } end
    end
    for _, k in ipairs(FIELDS) do cmp(k, old[k], new[k]) end
    local oh, nh = old.health or {}, new.health or {}
    for _, k in ipairs(HEALTH) do cmp("health." .. k, oh[k], nh[k]) end
    local oroutes, nroutes = {}, {}
    for _, r in ipairs(old.routes or {}) do oroutes[r.name] = r end
    for _, r in ipairs(new.routes or {}) do nroutes[r.name] = r end
    for _, r in ipairs(new.routes or {}) do
        local o = oroutes[r.name]
        if not o then
            out[#out + 1] = { field = "routes." .. r.name, old = nil, new = "added" }
        else
            for _, k in ipairs(ROUTE) do cmp("routes." .. r.name .. "." .. k, o[k], r[k]) end
        end
    end
    for _, r in ipairs(old.routes or {}) do
        if not nroutes[r.name] then
            out[#out + 1] = { field = "routes." .. r.name, old = "present", new = "removed" }
        end
    end
    return out
end

--- What deploy would do to a component's container (deploy always
--- recreates a component that should run).
local function container_action(agent, svc, comp, pull)
    local name = comp.container or lifecycle.container_of(svc, comp)
    local rec = agent.runtime.inspect(name)
    if not svc.active then return "service inactive: container left as it is" end
    if comp.desired_state == "stopped" then
        return rec and (rec.state == "running" and ("would stop " .. name) or (name .. " already stopped"))
            or (name .. ": nothing to stop")
    end
    local steps = {}
    local exists, reason = agent.runtime.image_exists(comp.image)
    if exists == false then
        if not pull then return string.format("image %s not present and [agent] pull = \"never\": "
            .. "%s would be skipped", comp.image, name) end
        steps[#steps + 1] = "would pull " .. comp.image
    elseif exists == nil then
        steps[#steps + 1] = "cannot check image " .. tostring(comp.image) .. " (" .. tostring(reason) .. ")"
    end
    if rec then
        steps[#steps + 1] = string.format("would recreate %s (now %s) from %s", name, tostring(rec.state), comp.image)
    else
        steps[#steps + 1] = string.format("would run %s from %s", name, comp.image)
    end
    return table.concat(steps, ", then ")
end

--- The preview lines of one parsed definition against the registry.
function M.lines(agent, new)
    local out = {}
    local old = agent.registry.service(new.name)
    local pull = agent.config.pull ~= "never"
    local function say(fmt, ...) out[#out + 1] = string.format(fmt, ...) end
    if not old then
        say("service %s: new", new.name)
    elseif old.active ~= new.active then
        say("service %s: changed: active %s → %s", new.name, tostring(old.active), tostring(new.active))
    else
        say("service %s: in the registry, active unchanged", new.name)
    end
    local old_by_name = {}
    for _, c in ipairs(old and old.components or {}) do old_by_name[c.name] = c end
    for _, c in ipairs(new.components) do
        local o = old_by_name[c.name]
        if not o then
            say("  component %s: new", c.name)
        else
            local ch = M.changes(o, c)
            if #ch == 0 then
                say("  component %s: unchanged", c.name)
            else
                say("  component %s: changed", c.name)
                for _, d in ipairs(ch) do say("    %s: %s → %s", d.field, text(d.old), text(d.new)) end
            end
        end
        say("    container: %s", container_action(agent, new, c, pull))
    end
    local kept = {}
    for _, c in ipairs(new.components) do kept[c.name] = true end
    for _, c in ipairs(old and old.components or {}) do
        if not kept[c.name] then
            say("  component %s: removed", c.name)
            say("    container: would remove %s", c.container or lifecycle.container_of(old, c))
        end
    end
    return out
end

return M
