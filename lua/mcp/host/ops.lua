-- mcp.host.ops: the operator operations, answering in the shapes of the gRPC
-- API's messages (proto/mcp/agent/v1/agent.proto). The daemon returns them
-- as they are; the CLI renders them, whether it computed them itself or got
-- them from a running daemon, so both paths print the same thing.
local lifecycle = require("mcp.lifecycle")
local locks = require("mcp.locks")
local parallel = require("mcp.parallel")
local routes = require("mcp.routes")
local supervisor = require("mcp.supervisor")
local drift = require("mcp.drift")

local M = {}

-- At most this many components of one command are worked on at once.
M.PARALLEL = parallel.DEFAULT_LIMIT

--- The component table of a service by name, or nil.
local function find_component(service, name)
    for _, c in ipairs(service.components) do
        if c.name == name then return c end
    end
end

--- The service and the components a command names (component nil/"" = all):
--- service, components, component name | nil, message.
local function resolve(agent, sname, cname)
    local svc = agent.registry.service(sname)
    if not svc then return nil, "no such service: " .. sname end
    if cname and cname ~= "" then
        local c = find_component(svc, cname)
        if not c then return nil, string.format("service %s has no component %s", sname, cname) end
        return svc, { c }, cname
    end
    return svc, svc.components, nil
end

-- The supervisor's rows by "service/component" (empty when the registry has none).
local function supervision_rows(agent)
    local by = {}
    for _, row in ipairs(agent.registry.supervisions and agent.registry.supervisions() or {}) do
        by[row.service .. "/" .. row.component] = row
    end
    return by
end
M.supervision_rows = supervision_rows

-- What status says a component is doing: the supervisor's state when it
-- has one, else what the runtime shows.
local function state_text(row, observed_state)
    local s = supervisor.describe(row)
    if s ~= "" and not (row.state == "running" and observed_state ~= "running") then return s end
    return observed_state
end

local function service_info(svc, observed, rows)
    local comps = {}
    for i, c in ipairs(svc.components) do
        local o = observed and observed[c.container]
        local row = rows and rows[svc.name .. "/" .. c.name] or {}
        local obs = observed and (o and o.state or "missing") or "unknown"
        comps[i] = { name = c.name, image = c.image, desired_state = c.desired_state,
                     observed_state = obs, container = c.container,
                     restarts = row.restarts or 0, last_exit_code = row.last_exit_code or 0,
                     state = state_text(row, obs) }
    end
    return { name = svc.name, active = svc.active, components = comps }
end

-- The operator acted on a component: a pending restart is dropped and a
-- given-up state cleared (SPEC §10).
local function operator_acted(agent, service, component)
    if agent.supervisor then
        agent.supervisor.forget(service, component)
    elseif agent.registry.clear_supervision then
        agent.registry.clear_supervision(service, component)
    end
end

--- Containers by name, or nil, message.
local observed_by_name = require("mcp.recovery").containers_by_name
M.observed_by_name = observed_by_name

--- Runs fn(component) on the components (M.PARALLEL at a time) and folds
--- the results into ComponentResult entries. fn returns a value (ok) or nil, error.
local function each_result(agent, comps, fn)
    local out, all_ok = {}, true
    local results, cancelled = parallel.each(agent, comps, M.PARALLEL, fn)
    for i, c in ipairs(comps) do
        local r = results[i] or { n = 0, error = cancelled and "cancelled" or "not done" }
        local ok = r[1] ~= nil and not r.error
        out[i] = { component = c.name, container = c.container, ok = ok,
                   error = ok and "" or tostring(r.error or r[2]),
                   detail = ok and type(r[1]) == "string" and r[1] or nil }
        if not ok then all_ok = false end
    end
    return out, all_ok
end

-- lifecycle.up's outcome as a command's result: detail | nil, reason
local function up_result(r, detail)
    if r.outcome == "failed" or r.outcome == "skipped" then return nil, r.entry.reason end
    if detail then return detail end
    return (r.outcome:gsub("_", " "))
end

-- deploy -------------------------------------------------------------------

--- Validates and stores a §4 document, then brings its components to their
--- desired state. -> DeployResponse | nil, "invalid"|"registry", message
local function deploy(agent, text, source, unknown)
    local svc, reason, detail = agent.registry.deploy(text, source)
    if not svc then return nil, reason, detail end
    operator_acted(agent, svc.name, nil)
    agent.registry.event(svc.name, nil, "deployed", "definition stored from " .. source)
    local resp = { service = service_info(svc), messages = {}, ok = true, results = {} }
    for _, u in ipairs(unknown or {}) do resp.messages[#resp.messages + 1] = "warning: " .. u .. ", ignored" end
    local pull = agent.config.pull ~= "never" -- SPEC §5: only deploy pulls
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
            local r = lifecycle.up(agent, svc, comp, { recreate = true, why = "deploy", pull = pull })
            if r.outcome == "skipped" and not pull then
                r.entry.reason = string.format('image %s is not present and [agent] pull = "never"', comp.image)
            end
            for _, w in ipairs(r.warnings) do warn(w) end
            return up_result(r, "started")
        end
        local ok, err = lifecycle.down(agent, svc, comp, warn)
        if not ok then return nil, err end
        return "stopped"
    end)
    -- containers (and routes) of components the new definition dropped
    for _, name in ipairs(lifecycle.remove_orphans(agent, svc, warn) or {}) do
        resp.messages[#resp.messages + 1] = name .. ": removed (no longer in the definition)"
    end
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

-- What each verb does to one component; warn(msg) hears route failures.
local function start(agent, svc, c, warn)
    local r = lifecycle.up(agent, svc, c, { reuse = true, why = "start" })
    for _, w in ipairs(r.warnings) do warn(w) end
    return up_result(r)
end

local function stop(agent, svc, c, warn)
    local ok, err = lifecycle.down(agent, svc, c, warn)
    if not ok then return nil, err end
    return "stopped"
end

local VERBS = {
    start = { state = "running", past = "started", work = start },
    stop = { state = "stopped", past = "stopped", work = stop },
    restart = { state = "running", past = "restarted",
                work = function(agent, svc, c, warn)
                    local ok, err = stop(agent, svc, c, warn)
                    if not ok then return nil, err end
                    ok, err = start(agent, svc, c, warn)
                    if not ok then return nil, err end
                    return "restarted"
                end },
}

--- start | stop | restart of "SERVICE" or one component.
--- -> ServiceResponse | nil, "not found", message
local function service_action(agent, verb, service, component)
    local v = assert(VERBS[verb], "unknown verb")
    local svc, comps, cname = resolve(agent, service, component)
    if not svc then return nil, "not found", comps end
    agent.registry.set_desired(svc.name, cname, v.state)
    operator_acted(agent, svc.name, cname)
    if v.state == "running" and not svc.active then agent.registry.set_active(svc.name, true) end
    local warnings = {}
    local function warn(msg)
        warnings[#warnings + 1] = msg
        agent.log.warn(msg, { service = svc.name })
    end
    local results, ok = each_result(agent, comps, function(c) return v.work(agent, svc, c, warn) end)
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
local function remove(agent, service)
    local svc = agent.registry.service(service)
    if not svc then return nil, "not found", "no such service: " .. service end
    local function warn(msg) agent.log.warn(msg, { service = svc.name }) end
    local results, ok = each_result(agent, svc.components, function(c)
        local done, err = lifecycle.remove(agent, svc, c, warn)
        if not done then return nil, err end
        return "removed"
    end)
    -- every container labelled with the service, not only today's components
    local orphans, oerr = lifecycle.remove_orphans(agent, { name = svc.name, components = {} }, warn)
    if not orphans then
        ok = false
        warn("cannot list containers to find the service's others: " .. tostring(oerr))
    end
    if ok then
        operator_acted(agent, svc.name, nil)
        agent.registry.delete(svc.name)
        agent.registry.event(svc.name, nil, "removed", "service removed by operator")
    end
    return { service = svc.name, ok = ok, results = results }
end

-- One operation at a time per service (mcp.locks): two deploys of one
-- service never interleave, and its containers end as the last stored
-- definition says.

--- Validates and stores a §4 document, then brings its components to their
--- desired state. A document with unknown keys is refused ("invalid", each
--- key named with the nearest known one) unless opts.allow_unknown.
--- -> DeployResponse | nil, "invalid"|"registry"|"busy", message
function M.deploy(agent, text, source, opts)
    local name, unknown = source, nil
    if agent.registry.validate then
        local ok, parsed, detail = agent.registry.validate(text, source)
        if not ok then return nil, parsed, detail end
        name, unknown = parsed, detail
        if unknown and #unknown > 0 and not (opts and opts.allow_unknown) then
            return nil, "invalid", table.concat(unknown, "\n")
                .. "\n" .. source .. ": refused: unknown keys (deploy --allow-unknown stores it anyway)"
        end
    end
    return locks.of(agent).with(name, deploy, agent, text, source, unknown)
end

--- start | stop | restart of "SERVICE" or one component.
--- -> ServiceResponse | nil, "not found"|"busy", message
function M.service_action(agent, verb, service, component)
    return locks.of(agent).with(service, service_action, agent, verb, service, component)
end

--- -> ServiceResponse | nil, "not found"|"busy", message
function M.remove(agent, service)
    return locks.of(agent).with(service, remove, agent, service)
end

-- list / status -----------------------------------------------------------------

--- -> ListServicesResponse from services and containers by name (nil: unknown, with err).
function M.list_from(services, observed, err, rows)
    local out = {}
    for i, svc in ipairs(services) do out[i] = service_info(svc, observed, rows) end
    return { services = out, runtime_error = err or "" }
end

--- -> ListServicesResponse
function M.list(agent)
    local services = agent.registry.services()
    local observed, err = observed_by_name(agent)
    return M.list_from(services, observed, err, supervision_rows(agent))
end

-- proxy: { set = registered routes, listener = } or nil; cert: expiry text or nil
local function component_status(svc, comp, observed, proxy, cert_expiry, row)
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
    local obs = observed and (c and c.state or "missing") or "unknown"
    row = row or {}
    -- drift is checked here too (SPEC §10), daemon or not
    local drifted = running and drift.of(c, svc, comp)
    if drifted and (not row.state or row.state == "running" or row.state == "drifted") then
        row = setmetatable({ state = "drifted", reason = drifted }, { __index = row })
    end
    return {
        restarts = row.restarts or 0, last_exit_code = row.last_exit_code or 0,
        state = state_text(row, obs),
        backoff_until = (row.state == "backoff" and row.backoff_until)
            and require("mcp.timefmt").format(row.backoff_until) or "",
        last_error = row.reason or "",
        name = comp.name, image = comp.image, desired_state = comp.desired_state,
        observed_state = obs,
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
    local rows = supervision_rows(agent)
    for i, comp in ipairs(svc.components) do
        comps[i] = component_status(svc, comp, observed, proxy, expiry, rows[svc.name .. "/" .. comp.name])
    end
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
