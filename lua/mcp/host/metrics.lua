-- mcp.host.metrics: the agent's Prometheus metrics (SPEC §11) over
-- core.metrics. The daemon's parts report here as things happen
-- (supervisor state changes, events, probes, boot stages, gRPC calls, full
-- lists); a scrape only renders what is kept, never calls podman.
-- docs/METRICS.md lists every metric.
local core = require("mcp.core")

local M = {}

local m = core.metrics
local SC = { "service", "component" }

local up = m.gauge("mcp_component_up",
    "1 when the component is running as desired, 0 when it is down, in backoff, given up, unhealthy or stopped.", SC)
local restarts = m.counter("mcp_component_restarts_total",
    "Restarts of the component by the supervisor since the agent started.", SC)
local backoff = m.gauge("mcp_component_backoff_seconds",
    "The crash-loop delay of the component's pending restart; 0 when none is pending.", SC)
local probe_seconds = m.histogram("mcp_probe_duration_seconds", "Duration of liveness probes.", { "check" })
local probes = m.counter("mcp_probe_total", "Liveness probes by check type and result (ok or fail).",
    { "check", "result" })
local events = m.counter("mcp_events_total", "Events stored in the registry, by kind.", { "kind" })
local boot_stage = m.gauge("mcp_boot_stage_duration_seconds",
    "How long each boot stage took (until healthy, or until its timeout).", { "stage" })
local grpc = m.counter("mcp_grpc_requests_total", "gRPC calls answered, by method and status code.",
    { "method", "code" })
local last_list = m.gauge("mcp_last_list_timestamp_seconds",
    "Unix time of the supervisor's last full list of containers; old means a stuck supervisor.")

local CODE_NAME = {}
for name, n in pairs(core.api.codes) do CODE_NAME[n] = name end

-- service \0 component -> { restarts = the supervisor's count last seen }
local known = {}
local function key(service, component) return service .. "\0" .. component end

--- A component's numbers. st: up (bool), restarts (the supervisor's count
--- since the component was last stable: the counter grows by its
--- increases), backoff_seconds, baseline (restarts already counted before
--- this process: the count a component is first seen with).
function M.component(service, component, st)
    local labels = { service = service, component = component }
    local k = known[key(service, component)]
    if not k then
        k = { restarts = st.baseline or 0 }
        known[key(service, component)] = k
        restarts:inc(labels, 0)
    end
    up:set(labels, st.up and 1 or 0)
    local n = st.restarts or k.restarts
    if n > k.restarts then restarts:inc(labels, n - k.restarts) end
    k.restarts = n
    backoff:set(labels, st.backoff_seconds or 0)
end

--- Drops a component's series (it left the registry).
function M.forget(service, component)
    local labels = { service = service, component = component }
    known[key(service, component)] = nil
    up:remove(labels)
    restarts:remove(labels)
    backoff:remove(labels)
end

local RUNNING = { running = true, drifted = true } -- drifted still runs

--- The supervisor's opts.changed(st): a component's state was persisted.
function M.supervised(st)
    local wait = 0
    if st.state == "backoff" and st.backoff_until then
        wait = math.max(0, st.backoff_until - core.clock.wallclock())
    end
    M.component(st.service, st.component, { up = RUNNING[st.state] or false, restarts = st.restarts,
                                            backoff_seconds = wait })
end

--- Every component of the registry (a read of SQLite, no podman): a
--- component no supervisor state speaks of is up when it should run; one
--- that left the registry loses its series.
function M.sync(registry)
    local ok, err = pcall(M.sync_now, registry)
    if not ok then return nil, err end
    return true
end

function M.sync_now(registry)
    local rows = {}
    for _, r in ipairs(registry.supervisions and registry.supervisions() or {}) do
        rows[key(r.service, r.component)] = r
    end
    local seen = {}
    for _, svc in ipairs(registry.services() or {}) do
        for _, c in ipairs(svc.components or {}) do
            local k = key(svc.name, c.name)
            seen[k] = true
            local row = rows[k]
            local want = svc.active and c.desired_state == "running"
            local state = row and row.state or nil
            local wait = 0
            if state == "backoff" and row.backoff_until then
                wait = math.max(0, row.backoff_until - core.clock.wallclock())
            end
            M.component(svc.name, c.name, { up = want and (state == nil or RUNNING[state] or false),
                                            restarts = row and row.restarts, backoff_seconds = wait,
                                            baseline = row and row.restarts })
        end
    end
    local gone = {}
    for k in pairs(known) do
        if not seen[k] then gone[#gone + 1] = k end
    end
    for _, k in ipairs(gone) do
        local service, component = k:match("^(.-)%z(.*)$")
        M.forget(service, component)
    end
end

--- fn wrapped so that a failure is logged, never raised into the caller
--- (the supervisor's hooks: metrics must not stop supervision).
function M.guard(agent, fn)
    return function(...)
        local ok, err = pcall(fn, ...)
        if not ok then agent.log.warn("metrics update failed", { error = tostring(err) }) end
    end
end

--- An event was stored (state.event_listeners: ev.kind).
function M.event(kind)
    events:inc({ kind = tostring(kind) })
end

--- A liveness probe ran.
function M.probe(check, ok, seconds)
    check = tostring(check or "unknown")
    probe_seconds:observe({ check = check }, math.max(0, tonumber(seconds) or 0))
    probes:inc({ check = check, result = ok and "ok" or "fail" })
end

--- A boot stage ended after `seconds`.
function M.boot_stage(name, seconds)
    boot_stage:set({ stage = tostring(name) }, tonumber(seconds) or 0)
end

--- A gRPC call was answered. method: the full path, or nil for one the
--- agent does not serve (kept as "unknown": clients cannot grow the label
--- set); code: the status number.
function M.grpc(method, code)
    local short = method and tostring(method):match("([^/]+)$") or "unknown"
    grpc:inc({ method = short, code = CODE_NAME[code] or tostring(code) })
end

--- The supervisor's full list ran at `wall` (Unix time).
function M.listed(wall)
    last_list:set(nil, wall)
end

--- Serves GET /metrics on listen; keeps the server (a collected one stops).
--- -> true | nil, reason, detail
function M.serve(listen)
    local srv, reason, detail = m.serve(listen)
    if not srv then return nil, reason, detail end
    M.server = srv
    return true
end

function M.close()
    if M.server then M.server:close(); M.server = nil end
end

--- The exposition text (tests, benchmarks).
M.render = m.render

-- agent.metrics for policies: their own counters and gauges, always named
-- mcp_policy_… so they cannot pass for the agent's.
local PREFIX = "mcp_policy_"

local function policy_name(name, kind)
    if type(name) ~= "string" or not name:match("^[a-zA-Z_][a-zA-Z0-9_]*$") then
        error("agent.metrics." .. kind .. ": the name must match [a-zA-Z_][a-zA-Z0-9_]*, got "
            .. tostring(name), 3)
    end
    if name:sub(1, #PREFIX) ~= PREFIX then name = PREFIX .. name end
    if kind == "counter" and not name:match("_total$") then name = name .. "_total" end
    if kind == "gauge" and name:match("_total$") then
        error("agent.metrics.gauge: only a counter's name ends in _total, got " .. name, 3)
    end
    return name
end

local function policy_define(kind)
    return function(name, help, labels)
        local full = policy_name(name, kind)
        if type(help) ~= "string" or help == "" then
            error("agent.metrics." .. kind .. ": a help text is required", 2)
        end
        if labels ~= nil and type(labels) ~= "table" then
            error("agent.metrics." .. kind .. ": labels must be a list of names", 2)
        end
        local ok, family = pcall(m[kind], full, help, labels)
        if not ok then error("agent.metrics." .. kind .. ": " .. tostring(family):gsub("^.-%((.*)%)$", "%1"), 2) end
        return family
    end
end

--- agent.metrics: counter(name, help[, labels]) and gauge(name, help[,
--- labels]) -> a family with :inc([labels][, n]) / :set(labels, v).
M.policy = { counter = policy_define("counter"), gauge = policy_define("gauge") }

return M
