-- mcp.health: where and how to probe a component (SPEC §4 [components.health],
-- else the boot stage's method on the first route, else the first published
-- port), shared by boot.lua and the policies that replace it.
local spec = require "mcp.spec"

local M = {}

M.CHECKS = { tcp = true, http = true, grpc = true }

-- The container port of a podman port spec "[ip:][host:]port[/proto]".
local function container_port_of(port_spec)
    if type(port_spec) ~= "string" then return nil end
    return tonumber(port_spec:match("(%d+)/?%a*$"))
end

--- What to probe for a component: { check=, port= (container port), path= }
--- or nil when it has no port to probe.
function M.probe_spec(component, stage)
    local h = component.health or {}
    local check = h.check or (stage and stage.health) or "tcp"
    local port = (h.port and h.port ~= 0) and h.port or nil
    if not port then
        local route = (component.routes or {})[1]
        if route then port = spec.route_listen_port(route) end
    end
    if not port then port = container_port_of((component.ports or {})[1]) end
    if not port then return nil end
    return { check = check, port = port, path = h.path }
end

--- The host port a runtime record publishes for a container port, or nil.
function M.host_port(record, container_port)
    for _, p in ipairs(record.ports or {}) do
        if p.container_port == container_port and (p.protocol or "tcp") == "tcp" then
            return p.host_port
        end
    end
    return nil
end

--- Runs one probe; returns true or nil, reason.
function M.probe(agent, check, port, path, timeout)
    local host = "127.0.0.1"
    if check == "http" then
        return agent.probe.http(host, port, path or "/", timeout)
    elseif check == "grpc" then
        return agent.probe.grpc(host, port, "", timeout)
    end
    return agent.probe.tcp(host, port, timeout)
end

return M
