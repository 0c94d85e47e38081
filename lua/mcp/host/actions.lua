-- mcp.host.actions: what the operator commands do to containers, shared by
-- the CLI and (later) the gRPC API. Each returns true or nil, reason.
local spec = require "mcp.spec"

local M = {}

local reason_text = require "mcp.reason"

--- The component table of a service by name, or nil.
function M.find_component(service, name)
    for _, c in ipairs(service.components) do
        if c.name == name then return c end
    end
end

--- Components named by "SERVICE[/COMPONENT]": service, components | nil, message.
function M.resolve(agent, target)
    local sname, cname = target:match("^([^/]+)/(.+)$")
    sname = sname or target
    local svc = agent.registry.service(sname)
    if not svc then return nil, "no such service: " .. sname end
    if cname then
        local c = M.find_component(svc, cname)
        if not c then return nil, string.format("service %s has no component %s", sname, cname) end
        return svc, { c }, cname
    end
    return svc, svc.components, nil
end

--- (Re)creates a component's container from its stored spec: removes any
--- container of that name first, so a changed definition takes effect.
function M.run_component(agent, svc, comp)
    local exists, reason, detail = agent.runtime.image_exists(comp.image)
    if exists == false then return nil, "no such image: " .. tostring(comp.image) end
    if exists == nil then return nil, reason_text(reason, detail) end
    local ok
    ok, reason, detail = agent.runtime.remove(comp.container)
    if not ok then return nil, "cannot remove old container: " .. reason_text(reason, detail) end
    local id
    id, reason, detail = agent.runtime.run(spec.container(svc, comp))
    if not id then return nil, reason_text(reason, detail) end
    return id
end

--- Starts a component: a stopped container is started again when it still
--- exists, anything else is recreated from the spec.
function M.start_component(agent, svc, comp)
    local c = agent.runtime.inspect(comp.container)
    if c and c.state == "running" then return "already running" end
    if c then
        local ok = agent.runtime.start(comp.container)
        if ok then return "started" end
    end
    local id, why = M.run_component(agent, svc, comp)
    if not id then return nil, why end
    return "created"
end

function M.stop_component(agent, comp)
    local ok, reason, detail = agent.runtime.stop(comp.container, 10)
    if ok or reason == "no such container" then return true end
    return nil, reason_text(reason, detail)
end

--- Runs fn(component) for each component concurrently; returns results in order.
function M.each(agent, comps, fn)
    local handles = {}
    for i, c in ipairs(comps) do handles[i] = agent.task.spawn(fn, c) end
    local out = {}
    for i, r in ipairs(agent.task.all(handles)) do
        if r[1] then
            out[i] = { ok = r[2] ~= nil, value = r[2], err = r[3] }
        else
            out[i] = { ok = false, err = tostring(r[2]) }
        end
    end
    return out
end

return M
