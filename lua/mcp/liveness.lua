-- mcp.liveness: after boot, every component with [components.health] is
-- probed every `interval` (jittered, so many components spread out) with
-- `timeout`; `failure_threshold` failures in a row make it unhealthy, a
-- pass after that healthy again (SPEC §10). One task per component, each
-- waiting on the clock and on its probe only (no thread, no podman call
-- per probe: the host port is pinned by the spec or read once by inspect).
-- The supervisor owns the decisions: it is told through hooks.
local health = require("mcp.health")

local M = {}

M.JITTER = 0.1 -- ±10 % of the interval between probes
M.DEFAULTS = { interval = 10, timeout = 1, failure_threshold = 3 }

-- What identifies a prober's configuration: a change restarts it.
local function fingerprint(component)
    local h = component.health or {}
    local routes = {}
    for _, r in ipairs(component.routes or {}) do routes[#routes + 1] = tostring(r.host_port) end
    return table.concat({ tostring(h.check), tostring(h.port), tostring(h.path), tostring(h.interval),
        tostring(h.timeout), tostring(h.failure_threshold), table.concat(component.ports or {}, ","),
        table.concat(routes, ",") }, "|")
end

--- hooks: running(name) -> bool (probe only a container that should be up),
--- healthy(name, entry, first) (a pass after failures, or the first pass
--- after start or reset), unhealthy(name, entry, err), probed(check, ok,
--- seconds) (optional, for metrics); random() in [0, 1) (default math.random).
function M.new(agent, hooks)
    local l = {}
    local probers = {} -- container name -> prober

    local function run_prober(p)
        local comp = p.entry.component
        local h = comp.health
        local interval = h.interval or M.DEFAULTS.interval
        local timeout = h.timeout or M.DEFAULTS.timeout
        local threshold = h.failure_threshold or M.DEFAULTS.failure_threshold
        local random = hooks.random or math.random
        local target = health.probe_spec(comp, nil)
        if not target then
            agent.log.warn(p.name .. ": [components.health] has no port to probe; liveness is off")
            return
        end
        -- the first probe comes anywhere in the first interval: spread out
        if not agent.clock.sleep(random() * interval) then return end
        while true do
            if hooks.running(p.name) then
                if not p.port then
                    p.port = health.pinned_host_port(comp, target.port)
                    if not p.port then
                        local rec = agent.runtime.inspect(p.name)
                        p.port = rec and rec.state == "running" and health.host_port(rec, target.port) or nil
                    end
                end
                local ok, err
                local started = agent.clock.now()
                if p.port then
                    ok, err = health.probe(agent, target.check, p.port, target.path, timeout)
                else
                    err = string.format("container port %d is not published", target.port)
                end
                if hooks.probed then hooks.probed(target.check, ok and true or false, agent.clock.now() - started) end
                if err == "cancelled" then return end
                if ok then
                    local was = p.healthy
                    p.fails, p.healthy, p.last_error = 0, true, nil
                    if was ~= true then hooks.healthy(p.name, p.entry, was == nil) end
                else
                    p.fails = p.fails + 1
                    p.last_error = tostring(err)
                    if p.fails == threshold then
                        p.healthy = false
                        hooks.unhealthy(p.name, p.entry, p.last_error)
                    end
                end
            end
            local delay = interval * (1 + M.JITTER * (2 * random() - 1))
            if not agent.clock.sleep(delay) then return end
        end
    end

    local function start(name, entry)
        local p = { name = name, entry = entry, fails = 0, key = fingerprint(entry.component) }
        p.task = agent.task.spawn(run_prober, p)
        probers[name] = p
    end

    local function stop(name)
        local p = probers[name]
        if p then agent.task.cancel(p.task); probers[name] = nil end
    end

    --- Probes exactly the components of `want` (container name -> {service=,
    --- component=}) that have [components.health] and should run; a changed
    --- health configuration restarts its prober.
    function l.sync(want)
        for name, p in pairs(probers) do
            local e = want[name]
            if not e or not e.component.health or e.component.desired_state ~= "running"
                    or fingerprint(e.component) ~= p.key then
                stop(name)
            else
                p.entry = e
            end
        end
        for name, e in pairs(want) do
            if not probers[name] and e.component.health and e.component.desired_state == "running"
                    and e.service.active then
                start(name, e)
            end
        end
    end

    --- After a restart: failures forgotten, the host port looked up again,
    --- and the next pass is a first pass.
    function l.reset(name)
        local p = probers[name]
        if p then p.fails, p.healthy, p.port = 0, nil, nil end
    end

    --- { fails=, healthy= (nil: not probed yet), last_error= } or nil.
    function l.view(name)
        local p = probers[name]
        return p and { fails = p.fails, healthy = p.healthy, last_error = p.last_error } or nil
    end

    function l.stop()
        for name in pairs(probers) do stop(name) end
    end

    --- How many components are probed.
    function l.count()
        local n = 0
        for _ in pairs(probers) do n = n + 1 end
        return n
    end

    return l
end

return M
