-- boot.lua: the boot sequence (SPEC §6).
--
-- Stages run in order. A stage starts only its own services (concurrently,
-- via recover), then probes all their components concurrently, each with
-- its own backoff, until healthy or the stage timeout. The first stage is
-- the foundation: while unhealthy it retries for ever (restarting containers
-- that died) until the boot task is cancelled. Later stages log a warning
-- and proceed. Active services in no stage are started after the last stage.
-- Stage entries naming services not in the registry are reported.
--
-- Probe target: the component's `health` (check, port, path), else the
-- stage's `health` method on the component's first route (else first
-- published port); the host port is the one the runtime reports for that
-- container port, on 127.0.0.1. A component with no port to probe counts
-- as healthy once its container runs.
--
-- The agent calls boot.run(agent, stages, opts); stages default to
-- agent.config.boot. opts: dry_run, parallel (starts), probe_timeout (s),
-- stage_timeout (default per stage, s), backoff (backoff.new options),
-- progress (function(event) called on every state change).

local recover = require "recover"
local backoff = require "backoff"
local health = require "mcp.health"

local M = {}

M.DEFAULT_STAGE_TIMEOUT = 60
M.DEFAULT_PROBE_TIMEOUT = 2
M.DEFAULT_BACKOFF = { base = 0.25, cap = 5, jitter = "full" }
M.CHECKS = health.CHECKS

local function progress(opts, event)
    if opts.progress then opts.progress(event) end
end

M.probe_spec = health.probe_spec
M.host_port = health.host_port
M.probe = health.probe

-- Brings a container that is not running back: start it when it exists,
-- else recreate it from the registry. Returns true or nil, reason.
local function restart(agent, service, component, record, quiet)
    local name = recover.container_of(service, component)
    if record then
        local ok, reason, detail = agent.runtime.start(name)
        if ok then return true end
        agent.log.warn("cannot start " .. name .. ", recreating it",
            { reason = recover.fmt_reason(reason, detail) })
    end
    local r = recover.component(agent, service, component, record, { quiet = quiet })
    if r.outcome == "recovered" or r.outcome == "already_running" then return true end
    return nil, r.entry.reason
end

-- Probes one component until healthy, the deadline (nil: never) or cancel.
-- Returns { component=, container=, healthy=, attempts=, restarts=,
-- time_to_healthy=, reason=, cancelled= }.
local function watch_component(agent, stage, service, component, deadline, started, opts)
    local name = recover.container_of(service, component)
    local res = { component = component.name, container = name, healthy = false,
                  attempts = 0, restarts = 0 }
    local b = backoff.new(opts.backoff or M.DEFAULT_BACKOFF)
    local target = M.probe_spec(component, stage)
    local probe_timeout = opts.probe_timeout or M.DEFAULT_PROBE_TIMEOUT
    local last_down
    while true do
        res.attempts = res.attempts + 1
        local ok, reason
        local record, ireason = agent.runtime.inspect(name)
        if record and record.state == "running" then
            if not target then
                ok = true
            else
                local hp = M.host_port(record, target.port)
                if not hp then
                    agent.log.warn(string.format("%s: container port %d is not published; running counts as healthy",
                        name, target.port), { service = service.name })
                    ok = true
                else
                    local t = probe_timeout
                    if deadline then t = math.max(0.001, math.min(t, deadline - agent.clock.now())) end
                    ok, reason = M.probe(agent, target.check, hp, target.path, t)
                end
            end
        elseif record or ireason == "no such container" then
            reason = record and ("container " .. tostring(record.state)) or "container missing"
            -- Warn on the first failure of a kind; a long foundation retry repeats at debug level.
            local repeated = last_down == reason
            local log = repeated and agent.log.debug or agent.log.warn
            last_down = reason
            log(string.format("%s is not running (%s), restarting it", name, reason),
                { service = service.name, exit_code = record and record.exit_code })
            local done, rreason = restart(agent, service, component, record, repeated)
            if done then
                res.restarts = res.restarts + 1
                agent.registry.event(service.name, component.name, "restarted",
                    "boot restarted " .. name .. " (" .. reason .. ")")
            else
                reason = reason .. "; restart failed: " .. tostring(rreason)
            end
        else
            reason = "inspect failed: " .. tostring(ireason)
        end
        if ok then
            res.healthy = true
            res.time_to_healthy = agent.clock.now() - started
            agent.log.info(name .. " is healthy", { service = service.name, attempts = res.attempts,
                seconds = string.format("%.3f", res.time_to_healthy) })
            progress(opts, { stage = stage.name, service = service.name, component = component.name,
                             state = "healthy" })
            return res
        end
        res.reason = reason
        if reason == "cancelled" then res.cancelled = true; return res end
        local delay = b.next()
        if deadline then
            local left = deadline - agent.clock.now()
            if left <= 0 then return res end
            delay = math.min(delay, left)
        end
        if not agent.clock.sleep(delay) then
            res.cancelled = true
            return res
        end
    end
end

local function cancel_all(agent, handles)
    for _, h in ipairs(handles) do agent.task.cancel(h) end
end

-- Folds component results into one service result.
local function service_result(name, comps)
    local s = { service = name, healthy = true, attempts = 0, restarts = 0, components = comps }
    local slowest = 0
    for _, c in ipairs(comps) do
        s.attempts = math.max(s.attempts, c.attempts)
        s.restarts = s.restarts + c.restarts
        if c.healthy then
            slowest = math.max(slowest, c.time_to_healthy)
        else
            s.healthy = false
            s.reason = s.reason or (c.container .. ": " .. tostring(c.reason or "not healthy"))
        end
    end
    if s.healthy then s.time_to_healthy = slowest end
    return s
end

--- Runs one stage. Returns its report; .cancelled when the task was cancelled.
function M.stage(agent, stage, foundation, services_by_name, opts)
    local started = agent.clock.now()
    local timeout = stage.timeout or opts.stage_timeout or M.DEFAULT_STAGE_TIMEOUT
    local sr = { name = stage.name, foundation = foundation, services = {}, unknown = {},
                 healthy = true, timed_out = false }
    if stage.health and not M.CHECKS[stage.health] then
        error(string.format("boot stage %q: unknown health check %q", tostring(stage.name), tostring(stage.health)))
    end
    local own, order = {}, {}
    for _, name in ipairs(stage.services or {}) do
        local svc = services_by_name[name]
        if not svc then
            sr.unknown[#sr.unknown + 1] = name
            agent.log.warn(string.format("boot stage %s names unknown service %s", tostring(stage.name), name))
        elseif not svc.active then
            agent.log.info(string.format("boot stage %s: service %s is inactive, skipped", tostring(stage.name), name))
            sr.services[#sr.services + 1] = { service = name, healthy = false, skipped = "inactive",
                                              attempts = 0, restarts = 0, components = {} }
        elseif not own[name] then
            own[name] = true
            order[#order + 1] = svc
        end
    end
    agent.log.info("boot stage " .. tostring(stage.name) .. " starting",
        { services = #order, timeout = timeout, foundation = foundation })
    progress(opts, { stage = stage.name, state = "starting" })

    -- Start only this stage's services (recover runs them in parallel).
    sr.start = recover.recover(agent, { only = own, dry_run = opts.dry_run, parallel = opts.parallel })
    if sr.start.cancelled then sr.cancelled = true; return sr end
    if opts.dry_run then
        sr.elapsed = agent.clock.now() - started
        return sr
    end

    -- Probe every component of every service concurrently.
    local deadline = not foundation and (started + timeout) or nil
    local handles, owners = {}, {}
    for _, svc in ipairs(order) do
        for _, c in ipairs(svc.components or {}) do
            if (c.desired_state or "running") == "running" then
                handles[#handles + 1] = agent.task.spawn(watch_component, agent, stage, svc, c,
                    deadline, started, opts)
                owners[#handles] = svc.name
            end
        end
    end

    local results = {}
    for i, h in ipairs(handles) do
        local limit = nil
        if foundation and not sr.timed_out then limit = math.max(0, started + timeout - agent.clock.now()) end
        local ok, res = agent.task.wait(h, limit)
        if ok == nil and res == "timeout" then
            -- Only the foundation waits with a timeout: say so, then keep waiting.
            agent.log.warn(string.format("foundation stage %s not healthy after %gs; retrying until it is",
                tostring(stage.name), timeout))
            sr.timed_out = true
            ok, res = agent.task.wait(h)
        end
        if ok == nil then
            cancel_all(agent, handles)
            sr.cancelled = true
            sr.elapsed = agent.clock.now() - started
            return sr
        elseif ok == false then
            res = { component = "?", container = "?", healthy = false, attempts = 0, restarts = 0,
                    reason = "probe task failed: " .. tostring(res) }
            agent.log.error(res.reason)
        end
        results[i] = res
    end

    local per = {}
    for i, res in ipairs(results) do
        local name = owners[i]
        per[name] = per[name] or {}
        table.insert(per[name], res)
    end
    for _, svc in ipairs(order) do
        local s = service_result(svc.name, per[svc.name] or {})
        sr.services[#sr.services + 1] = s
        if not s.healthy then sr.healthy = false end
    end
    table.sort(sr.services, function(a, b) return a.service < b.service end)
    sr.elapsed = agent.clock.now() - started
    if not sr.healthy then
        sr.timed_out = true
        agent.log.warn(string.format("boot stage %s not healthy after %gs, proceeding", tostring(stage.name), timeout))
    else
        agent.log.info(string.format("boot stage %s healthy", tostring(stage.name)),
            { seconds = string.format("%.3f", sr.elapsed) })
    end
    progress(opts, { stage = stage.name, state = sr.healthy and "healthy" or "timed_out" })
    return sr
end

--- The entry point: boot.run(agent, stages, opts) -> report
--- { stages = { {name=, foundation=, healthy=, timed_out=, elapsed=, unknown={},
---     services = { {service=, healthy=, attempts=, restarts=, time_to_healthy=,
---     components={...}} }, start = <recover report>} },
---   unknown = {names}, unstaged = <recover report of services in no stage>,
---   healthy = bool, cancelled = bool, dry_run = bool }
function M.run(agent, stages, opts)
    opts = opts or {}
    stages = stages or (agent.config and agent.config.boot) or {}
    opts.dry_run = opts.dry_run or (agent.config and agent.config.dry_run) or false
    local report = { stages = {}, unknown = {}, healthy = true, cancelled = false, dry_run = opts.dry_run }
    local by_name, staged = {}, {}
    for _, svc in ipairs(agent.registry.services()) do by_name[svc.name] = svc end

    for i, stage in ipairs(stages) do
        for _, name in ipairs(stage.services or {}) do staged[name] = true end
        local sr = M.stage(agent, stage, i == 1, by_name, opts)
        report.stages[#report.stages + 1] = sr
        for _, u in ipairs(sr.unknown) do report.unknown[#report.unknown + 1] = u end
        if not sr.healthy then report.healthy = false end
        if sr.cancelled then
            report.cancelled = true
            report.healthy = false
            agent.log.warn("boot cancelled during stage " .. tostring(stage.name))
            return report
        end
    end

    -- Active services in no stage start after the last stage.
    local rest = {}
    local any = false
    for name, svc in pairs(by_name) do
        if svc.active and not staged[name] then rest[name] = true; any = true end
    end
    if any then
        agent.log.info("boot: starting services in no stage")
        report.unstaged = recover.recover(agent, { only = rest, dry_run = opts.dry_run, parallel = opts.parallel })
        if report.unstaged.cancelled then report.cancelled = true end
        if #report.unstaged.failed > 0 then report.healthy = false end
    end
    agent.log.info("boot finished", { healthy = report.healthy, stages = #report.stages })
    progress(opts, { state = "done", healthy = report.healthy })
    return report
end

return M
