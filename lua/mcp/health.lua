-- mcp.health: where and how to probe a component (SPEC §4 [components.health],
-- else the boot stage's method on the first route, else the first published
-- port), shared by boot.lua and the policies that replace it.
local spec = require("mcp.spec")

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

-- "[ip:][host:]port[/proto]" -> host port (nil when none or not a number),
-- container port, protocol. IPv6 addresses come in brackets: "[::1]:80:8080".
local function parse_port_spec(port_spec)
    if type(port_spec) ~= "string" then return nil end
    local body, proto = port_spec:match("^(.-)/(%a+)$")
    if not body then body, proto = port_spec, "tcp" end
    local host, cport = body:match("([^:]*):([^:]*)$")
    if not host then cport = body end
    return tonumber(host or ""), tonumber(cport), proto:lower()
end
M.parse_port_spec = parse_port_spec

--- The host port the component's spec pins for a container port (tcp), or
--- nil when the runtime picks it (no mapping, "ip::port", ranges): then only
--- the runtime's record (host_port) can tell. Looks at `ports` first, then
--- routes with a persisted host_port, in the order mcp.spec.container maps
--- them, so it names the same port the runtime reports first.
function M.pinned_host_port(component, container_port)
    if not container_port then return nil end
    for _, p in ipairs(component.ports or {}) do
        local host, cport, proto = parse_port_spec(p)
        if cport == container_port and proto == "tcp" then
            if host and host ~= 0 then return host end
            return nil
        end
    end
    for _, route in ipairs(component.routes or {}) do
        if route.host_port and route.host_port ~= 0 and spec.route_listen_port(route) == container_port then
            return route.host_port
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
