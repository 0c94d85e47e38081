-- mcp.host.ops: the operator operations, answering in the shapes of the gRPC
-- API's messages (proto/mcp/agent/v1/agent.proto). The daemon returns them
-- as they are; the CLI renders them, whether it computed them itself or got
-- them from a running daemon, so both paths print the same thing.
local actions = require "mcp.host.actions"
local routes = require "mcp.routes"

local M = {}

local reason_text = require "mcp.reason"

local function service_info(svc, observed)
    local comps = {}
    for i, c in ipairs(svc.components) do
        local o = observed and observed[c.container]
        comps[i] = { name = c.name, image = c.image, desired_state = c.desired_state,
                     observed_state = observed and (o and o.state or "missing") or "unknown",
                     container = c.container }
    end
    return { name = svc.name, active = svc.active, components = comps }
end

--- Containers by name, or nil, message.
local observed_by_name = require("mcp.recovery").containers_by_name
M.observed_by_name = observed_by_name

--- Runs fn(component) on every component concurrently and folds the results
--- into ComponentResult entries. fn returns a value (ok) or nil, error.
local function each_result(agent, comps, fn)
    local results, all_ok = {}, true
    for i, r in ipairs(actions.each(agent, comps, fn)) do
        local c = comps[i]
        local ok = r.ok
        results[i] = { component = c.name, container = c.container, ok = ok,
                       error = ok and "" or tostring(r.err),
                       detail = ok and type(r.value) == "string" and r.value or nil }
        if not ok then all_ok = false end
    end
    return results, all_ok
end

-- deploy -------------------------------------------------------------------

--- Validates and stores a §4 document, then brings its components to their
--- desired state. -> DeployResponse | nil, "invalid"|"registry", message
function M.deploy(agent, text, source)
    local svc, reason, detail = agent.registry.deploy(text, source)
    if not svc then return nil, reason, detail end
    agent.registry.event(svc.name, nil, "deployed", "definition stored from " .. source)
    local resp = { service = service_info(svc), messages = {}, ok = true, results = {} }
    if not svc.active then
        resp.messages[1] = svc.name .. ": stored (inactive)"
        return resp
    end
    local function warn(msg)
        resp.messages[#resp.messages + 1] = "warning: " .. msg
        agent.log.warn(msg, { service = svc.name })
    end
    resp.results, resp.ok = each_result(agent, svc.components, function(comp)
        if comp.desired_state == "running" then
            local id, err = actions.run_component(agent, svc, comp)
            if not id then return nil, err end
            routes.register(agent, svc, comp, warn)
            return "started"
        end
        routes.unregister(agent, comp, warn)
        local ok, err = actions.stop_component(agent, comp)
        if not ok then return nil, err end
        return "stopped"
    end)
    for _, r in ipairs(resp.results) do
        if r.ok then
            resp.messages[#resp.messages + 1] = r.container .. ": " .. r.detail
        else
            resp.messages[#resp.messages + 1] = r.container .. ": failed: " .. r.error
            agent.registry.event(svc.name, r.component, "failed", "deploy: " .. r.error)
        end
    end
    return resp
end

-- start / stop / restart / remove ----------------------------------------------

local VERBS = {
    start = { state = "running", past = "started",
              work = function(agent, svc, c) return actions.start_component(agent, svc, c) end },
    stop = { state = "stopped", past = "stopped",
             work = function(agent, _, c)
                 local ok, err = actions.stop_component(agent, c)
                 if not ok then return nil, err end
                 return "stopped"
             end },
    restart = { state = "running", past = "restarted",
                work = function(agent, svc, c)
                    local ok, err = actions.stop_component(agent, c)
                    if not ok then return nil, err end
                    local how, why = actions.start_component(agent, svc, c)
                    if not how then return nil, why end
                    return "restarted"
                end },
}

--- start | stop | restart of "SERVICE" or one component.
--- -> ServiceResponse | nil, "not found", message
function M.service_action(agent, verb, service, component)
    local v = assert(VERBS[verb], "unknown verb")
    local target = service .. ((component and component ~= "") and ("/" .. component) or "")
    local svc, comps, cname = actions.resolve(agent, target)
    if not svc then return nil, "not found", comps end
    agent.registry.set_desired(svc.name, cname, v.state)
    if v.state == "running" and not svc.active then agent.registry.set_active(svc.name, true) end
    local warnings = {}
    local function warn(msg)
        warnings[#warnings + 1] = msg
        agent.log.warn(msg, { service = svc.name })
    end
    local results, ok = each_result(agent, comps, function(c)
        if v.state == "stopped" then routes.unregister(agent, c, warn) end
        local done, why = v.work(agent, svc, c)
        if done and v.state == "running" then routes.register(agent, svc, c, warn) end
        return done, why
    end)
    for _, r in ipairs(results) do
        if r.ok then
            r.detail = r.detail or v.past
            agent.registry.event(svc.name, r.component, verb, verb .. " by operator")
        else
            agent.registry.event(svc.name, r.component, "failed", verb .. ": " .. r.error)
        end
    end
    return { service = svc.name, ok = ok, results = results, warnings = warnings }
end

--- Removes every container of a service, then the service (its routes' ports
--- return to the pool). A container that cannot be removed keeps the service.
--- -> ServiceResponse | nil, "not found", message
function M.remove(agent, service)
    local svc = agent.registry.service(service)
    if not svc then return nil, "not found", "no such service: " .. service end
    local function warn(msg) agent.log.warn(msg, { service = svc.name }) end
    local results, ok = each_result(agent, svc.components, function(c)
        routes.unregister(agent, c, warn)
        local done, reason, detail = agent.runtime.remove(c.container)
        if not done then return nil, reason_text(reason, detail) end
        return "removed"
    end)
    if ok then
        agent.registry.delete(svc.name)
        agent.registry.event(svc.name, nil, "removed", "service removed by operator")
    end
    return { service = svc.name, ok = ok, results = results }
end

-- list / status -----------------------------------------------------------------

--- -> ListServicesResponse from services and containers by name (nil: unknown, with err).
function M.list_from(services, observed, err)
    local out = {}
    for i, svc in ipairs(services) do out[i] = service_info(svc, observed) end
    return { services = out, runtime_error = err or "" }
end

--- -> ListServicesResponse
function M.list(agent)
    local services = agent.registry.services()
    local observed, err = observed_by_name(agent)
    return M.list_from(services, observed, err)
end

-- proxy: { set = registered routes, listener = } or nil; cert: expiry text or nil
local function component_status(comp, observed, proxy, cert_expiry)
    local c = observed and observed[comp.container]
    local rts = {}
    for i, r in ipairs(comp.routes or {}) do
        local key = proxy and (proxy.listener .. "|" .. (r.hostname or "") .. "|127.0.0.1:" .. tostring(r.host_port))
        rts[i] = { name = r.name, port = r.port or 0, host_port = r.host_port or 0,
                   mode = r.mode or "l4", hostname = r.hostname or "",
                   registered = (proxy and proxy.set[key]) or false,
                   cert_expires_at = (r.mode == "l7" and cert_expiry) or "" }
    end
    local ports = {}
    for i, p in ipairs(c and c.ports or {}) do
        ports[i] = { host_ip = p.host_ip or "", host_port = p.host_port or 0,
                     container_port = p.container_port or 0, protocol = p.protocol or "tcp" }
    end
    local running = c ~= nil and c.state == "running"
    return {
        name = comp.name, image = comp.image, desired_state = comp.desired_state,
        observed_state = observed and (c and c.state or "missing") or "unknown",
        container = comp.container, ports = ports, routes = rts,
        exit_code = c and c.exit_code or 0, started_at = c and c.started_at or "",
        ok = observed ~= nil and ((comp.desired_state == "running") == running),
    }
end

--- What mc-proxy has registered, asked once: { set=, listener= } or nil.
local function proxy_view(agent)
    local set, l = routes.registered(agent)
    return set and { set = set, listener = l } or nil
end

--- -> ServiceStatus of one service (observed: containers by name, or nil when
--- the runtime could not be asked, with err; proxy from proxy_view).
function M.service_status(agent, svc, observed, err, proxy)
    local expiry
    if agent.certs and agent.certs.info and #routes.hostnames(svc) > 0 then
        local info = agent.certs.info(svc.name)
        expiry = info and info.expires_at
    end
    local comps = {}
    for i, comp in ipairs(svc.components) do comps[i] = component_status(comp, observed, proxy, expiry) end
    local events = {}
    for i, e in ipairs(agent.registry.events(svc.name, 5) or {}) do
        events[i] = { time_unix_ms = math.floor(e.time * 1000 + 0.5), service = svc.name,
                      component = e.component or "", kind = e.kind, message = e.message,
                      exit_code = e.exit_code or 0 }
    end
    return { name = svc.name, active = svc.active, components = comps, events = events,
             runtime_error = err or "" }
end

--- -> ServiceStatus | nil, "not found", message
function M.status(agent, name)
    local svc = agent.registry.service(name)
    if not svc then return nil, "not found", "no such service: " .. name end
    local observed, err = observed_by_name(agent)
    return M.service_status(agent, svc, observed, err, proxy_view(agent))
end

--- Every service's ServiceStatus, asking the runtime once.
function M.status_all(agent)
    local observed, err = observed_by_name(agent)
    local proxy = proxy_view(agent)
    local out = {}
    for i, svc in ipairs(agent.registry.services()) do
        out[i] = M.service_status(agent, svc, observed, err, proxy)
    end
    return out, err
end

-- recover ------------------------------------------------------------------------

--- Runs the recover policy. -> report (RecoverReport shape) | nil, "policy", message
function M.recover(agent, recover_policy, dry_run)
    local ok, report = xpcall(recover_policy.run, function(e) return debug.traceback(tostring(e), 2) end,
        agent, { dry_run = dry_run })
    if not ok then return nil, "policy", report end
    if type(report) ~= "table" then return nil, "policy", "the recover policy returned no report" end
    report.dry_run = dry_run
    for _, list in ipairs({ "recovered", "already_running", "skipped", "failed", "planned" }) do
        report[list] = report[list] or {}
    end
    report.warnings = report.warnings or {}
    return report
end

return M
