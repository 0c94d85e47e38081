-- mcp.spec: from a registry service/component (docs/LUA_API.md) to the
-- container spec given to agent.runtime.run (SPEC §4).

local M = {}

--- The container name: "service-component", or "service" when the
--- component has the service's name (or none).
function M.container_name(service_name, component_name)
    if type(service_name) ~= "string" or service_name == "" then
        error("container_name: service name must be a non-empty string", 2)
    end
    if component_name == nil or component_name == "" or component_name == service_name then
        return service_name
    end
    return service_name .. "-" .. component_name
end

local function env_key(name)
    return (name:upper():gsub("-", "_"))
end

--- The port the process must listen on for a route: its container port,
--- or (port nil/0: the process listens on $PORT, mapped host:host) its host port.
function M.route_listen_port(route)
    if route.port and route.port ~= 0 then return route.port end
    if route.host_port and route.host_port ~= 0 then return route.host_port end
    return nil
end

--- The host port mapping a route gets: "127.0.0.1:HOST:PORT/tcp", or nil
--- when the route has no host port yet.
function M.route_port_spec(route)
    local host = route.host_port
    if not host or host == 0 then return nil end
    return string.format("127.0.0.1:%d:%d/tcp", host, M.route_listen_port(route))
end

--- The env entries a component's routes add: PORT for the first route,
--- PORT_<NAME> for each (name upper-cased, '-' -> '_').
function M.route_env(component)
    local env = {}
    for i, route in ipairs(component.routes or {}) do
        local port = M.route_listen_port(route)
        if port then
            if i == 1 then env[#env + 1] = "PORT=" .. port end
            if route.name and route.name ~= "" then
                env[#env + 1] = "PORT_" .. env_key(route.name) .. "=" .. port
            end
        end
    end
    return env
end

local function copy(list)
    list = list or {}
    return table.move(list, 1, #list, 1, {})
end

-- FNV-1a, 64 bits (Lua integers wrap): a stable fingerprint, not a
-- security measure — it only has to notice that a spec changed, and it
-- must give the same answer in the daemon and in pure-Lua tests.
local function fnv1a64(text)
    local h = -3750763034362895579 -- 0xcbf29ce484222325
    for i = 1, #text do
        h = (h ~ text:byte(i)) * 1099511628211
    end
    return string.format("%016x", h)
end

--- The mcp.spec-hash of a run spec: what podman is asked to create (name,
--- image, network, user, ports, volumes, cmd, env); labels and the restart
--- policy, which the agent applies itself, are not part of it.
function M.hash(run_spec)
    local parts = { "v1", tostring(run_spec.name), tostring(run_spec.image),
                    tostring(run_spec.network or ""), tostring(run_spec.user or "") }
    for _, list in ipairs({ "ports", "volumes", "cmd", "env" }) do
        parts[#parts + 1] = list .. "=" .. #(run_spec[list] or {})
        for _, v in ipairs(run_spec[list] or {}) do parts[#parts + 1] = tostring(v) end
    end
    return fnv1a64(table.concat(parts, "\0"))
end

--- The runtime spec for one component of a service: name, image, network,
--- user, restart, volumes, cmd as stored; ports = the component's ports plus
--- one per route with a host port; env = the component's env plus the route
--- variables (which replace a component entry of the same key); labels
--- mcp.service, mcp.component and mcp.spec-hash (SPEC §10).
function M.container(service, component)
    if type(service) ~= "table" or type(component) ~= "table" then
        error("spec.container: expected (service, component) tables", 2)
    end
    local ports = copy(component.ports)
    local seen = {}
    for _, p in ipairs(ports) do seen[p] = true end
    for _, route in ipairs(component.routes or {}) do
        local p = M.route_port_spec(route)
        if p and not seen[p] then
            ports[#ports + 1] = p
            seen[p] = true
        end
    end
    local route_env = M.route_env(component)
    local overridden = {}
    for _, e in ipairs(route_env) do overridden[e:match("^([^=]*)=")] = true end
    local env = {}
    for _, e in ipairs(component.env or {}) do
        if not overridden[e:match("^([^=]*)=") or e] then env[#env + 1] = e end
    end
    for _, e in ipairs(route_env) do env[#env + 1] = e end
    local run_spec = {
        name = component.container or M.container_name(service.name, component.name),
        image = component.image,
        network = component.network,
        user = component.user,
        restart = component.restart,
        ports = ports,
        volumes = copy(component.volumes),
        cmd = copy(component.cmd),
        env = env,
    }
    run_spec.labels = { ["mcp.service"] = service.name, ["mcp.component"] = component.name,
                        ["mcp.spec-hash"] = M.hash(run_spec) }
    return run_spec
end

return M
