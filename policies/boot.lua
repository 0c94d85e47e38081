-- boot.lua: the boot sequence (SPEC §6).
--
-- Stages run in order. A stage starts only its own services (START_PARALLEL
-- podman runs at a time), and probes each component as soon as its own
-- container is up, concurrently, each with its own backoff,
-- until healthy or the stage timeout. The first stage is the foundation:
-- while unhealthy it retries for ever (restarting containers that died)
-- until the boot task is cancelled. Later stages log a warning and proceed.
-- Active services in no stage are started after the last stage. Stage
-- entries naming services not in the registry are reported.
--
-- Probe target: the component's `health` (check, port, path), else the
-- stage's `health` method on the component's first route (else first
-- published port), on 127.0.0.1. The host port comes from the spec when it
-- is pinned ("ip:host:port" or a route's host_port), else from one
-- `inspect` once the container runs. A component with no port to probe
-- counts as healthy once its container runs.
--
-- Cost: podman calls take 0.1-0.5 s each and compete with the containers
-- being started, so a probe loop calls podman only when it must: it asks
-- whether its container still runs only after probes kept failing for
-- LIVENESS_AFTER seconds, then at most every LIVENESS_INTERVAL (after the
-- foundation's timeout RETRY_LIVENESS_INTERVAL), and the
-- components of a stage share one `list` for that (never an `inspect` per
-- probe). Probes back off from 10 ms to 50 ms (full jitter) within the
-- stage timeout, so a service is seen healthy within tens of ms; only the
-- foundation's endless retry after its timeout backs off to seconds.
--
-- The agent calls boot.run(agent, stages, opts); stages default to
-- agent.config.boot. opts: dry_run, parallel (starts per stage, default
-- START_PARALLEL), probe_timeout (s), stage_timeout (default per stage, s),
-- backoff (backoff.new options for probes within the stage timeout),
-- retry_backoff (the foundation's retry after its timeout), progress
-- (function(event) called on every state change).

local recover = require "mcp.recovery"
local backoff = require "backoff"
local health = require "mcp.health"

local M = {}

M.DEFAULT_STAGE_TIMEOUT = 60
M.DEFAULT_PROBE_TIMEOUT = 2
M.DEFAULT_BACKOFF = { base = 0.01, cap = 0.05, jitter = "full" }
M.DEFAULT_RETRY_BACKOFF = { base = 0.25, cap = 5, jitter = "full" }
-- podman runs started together all finish late (they contend for podman's
-- locks and 2 cores here): 4 at a time brought the first containers up
-- sooner and measured faster than all 8 of a stage at once (docs/BENCHMARKS.md).
M.START_PARALLEL = 4
M.LIVENESS_AFTER = 1
M.LIVENESS_INTERVAL = 1
M.RETRY_LIVENESS_INTERVAL = 5
M.CHECKS = health.CHECKS

local function progress(opts, event)
    if opts.progress then opts.progress(event) end
end

M.probe_spec = health.probe_spec
M.host_port = health.host_port
M.pinned_host_port = health.pinned_host_port
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

-- The stage's view of which containers run: one `list` shared by all its
-- probe loops, taken in a task of its own so that no loop stops probing
-- while podman answers. lookup(name, newer_than) answers from a list begun
-- after newer_than (a restart, the loop's previous look): the record, or
-- false (no such container); when there is none yet it starts one (unless
-- one is running) and returns nil, "pending"; nil, "list failed" when the
-- last list begun after newer_than failed. close() cancels a running list.
local function new_observer(agent)
    local o = { taken = -math.huge, failed = -math.huge }
    local function refresh()
        local at = agent.clock.now()
        local by, reason = recover.containers_by_name(agent)
        if by then
            o.by, o.taken = by, at
        else
            o.failed = at
            agent.log.debug("boot: cannot list containers: " .. tostring(reason))
        end
        o.task = nil
    end
    function o.lookup(name, newer_than)
        if o.taken > newer_than then return o.by[name] or false end
        if o.failed > newer_than then return nil, "list failed" end
        if not o.task then o.task = agent.task.spawn(refresh) end
        return nil, "pending"
    end
    function o.close()
        if o.task then agent.task.cancel(o.task); o.task = nil end
    end
    return o
end

-- A probe loop's state: whether the container runs as far as we know
-- (`up`), since when, its record when it is known to be down, the host port
-- to probe (`hp`; `resolved` once known, hp nil then meaning unpublished).
local function initial_state(agent, component, target, start)
    local outcome = start and start.outcome
    local st = { up = outcome == "recovered" or outcome == "already_running",
                 since = agent.clock.now(), checked = agent.clock.now() }
    -- Not started (recover said why): as the runtime would tell it. A
    -- created container run left behind is for recover to find.
    if not st.up then st.down = "container missing" end
    st.pinned = target and M.pinned_host_port(component, target.port)
    st.hp, st.resolved = st.pinned, st.pinned ~= nil
    return st
end

-- Asks the runtime about a running container when the loop needs it: once
-- to learn an unpinned host port (inspect), and whenever probes kept failing
-- for LIVENESS_AFTER s, at most every `interval` s (the shared list).
-- Marks st down (with st.record, st.down) when it is not running.
local function check_runtime(agent, name, target, st, obs, interval)
    local now = agent.clock.now()
    local rec, reason
    if target and not st.resolved then
        rec, reason = agent.runtime.inspect(name)
        if not rec and reason == "no such container" then rec = false end
    elseif now - st.since >= M.LIVENESS_AFTER and now - st.checked >= interval then
        rec, reason = obs.lookup(name, math.max(st.since, st.checked))
        -- Pending: look again on the next round. A failed list is no
        -- verdict: keep probing, ask again after the interval.
        if rec == nil then
            if reason ~= "pending" then st.checked = now end
            return nil
        end
        st.checked = now
    else
        return nil
    end
    if rec == nil then return "inspect failed: " .. tostring(reason) end
    if rec and rec.state == "running" then
        if target and not st.resolved then
            st.hp, st.resolved = M.host_port(rec, target.port), true
        end
        return nil
    end
    st.up, st.record = false, rec or nil
    st.down = rec and ("container " .. tostring(rec.state)) or "container missing"
    st.exit_code = rec and rec.exit_code
    return nil
end

-- Probes one component until healthy, the deadline (nil: never) or cancel.
-- `start` is the outcome of starting it (nil: unknown). Returns { component=,
-- container=, healthy=, attempts=, restarts=, time_to_healthy=, reason=, cancelled= }.
local function watch_component(agent, stage, service, component, start, w)
    local name = recover.container_of(service, component)
    local res = { component = component.name, container = name, healthy = false,
                  attempts = 0, restarts = 0 }
    local opts = w.opts
    local fast = backoff.new(opts.backoff or M.DEFAULT_BACKOFF)
    local slow
    local target = M.probe_spec(component, stage)
    local probe_timeout = opts.probe_timeout or M.DEFAULT_PROBE_TIMEOUT
    local st = initial_state(agent, component, target, start)
    local last_down
    while true do
        res.attempts = res.attempts + 1
        local late = agent.clock.now() >= w.timeout_at
        local ok, reason
        if st.up then
            reason = check_runtime(agent, name, target, st, w.observer,
                late and M.RETRY_LIVENESS_INTERVAL or M.LIVENESS_INTERVAL)
        end
        if not st.up then
            reason = st.down
            -- Warn on the first failure of a kind; a long foundation retry repeats at debug level.
            local repeated = last_down == reason
            local log = repeated and agent.log.debug or agent.log.warn
            last_down = reason
            log(string.format("%s is not running (%s), restarting it", name, reason),
                { service = service.name, exit_code = st.exit_code })
            local done, rreason = restart(agent, service, component, st.record, repeated)
            if done then
                res.restarts = res.restarts + 1
                agent.registry.event(service.name, component.name, "restarted",
                    "boot restarted " .. name .. " (" .. reason .. ")")
                st.up, st.record, st.exit_code = true, nil, nil
                st.since, st.checked = agent.clock.now(), agent.clock.now()
                st.hp, st.resolved = st.pinned, st.pinned ~= nil
                reason = check_runtime(agent, name, target, st, w.observer, M.LIVENESS_INTERVAL)
            else
                -- run may have left a created container behind: let recover look.
                st.record = nil
                reason = reason .. "; restart failed: " .. tostring(rreason)
            end
        end
        if st.up and not reason then
            if not target then
                ok = true
            elseif not st.hp then
                agent.log.warn(string.format("%s: container port %d is not published; running counts as healthy",
                    name, target.port), { service = service.name })
                ok = true
            else
                local t = probe_timeout
                if w.deadline then t = math.max(0.001, math.min(t, w.deadline - agent.clock.now())) end
                ok, reason = M.probe(agent, target.check, st.hp, target.path, t)
            end
        end
        if ok then
            res.healthy = true
            res.time_to_healthy = agent.clock.now() - w.started
            agent.log.info(name .. " is healthy", { service = service.name, attempts = res.attempts,
                seconds = string.format("%.3f", res.time_to_healthy) })
            progress(opts, { stage = stage.name, service = service.name, component = component.name,
                             state = "healthy" })
            return res
        end
        res.reason = reason
        if reason == "cancelled" then res.cancelled = true; return res end
        local delay
        if late then
            slow = slow or backoff.new(opts.retry_backoff or M.DEFAULT_RETRY_BACKOFF)
            delay = slow.next()
        else
            delay = math.min(fast.next(), w.timeout_at - agent.clock.now())
        end
        if w.deadline then
            local left = w.deadline - agent.clock.now()
            if left <= 0 then return res end
            delay = math.min(delay, left)
        end
        if not agent.clock.sleep(math.max(0, delay)) then
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

    -- Start only this stage's services, all at once; each component's probe
    -- loop begins as soon as its own container is up.
    local deadline = not foundation and (started + timeout) or nil
    local w = { opts = opts, started = started, timeout_at = started + timeout, deadline = deadline,
                observer = new_observer(agent) }
    local handles, owners, slots, watched = {}, {}, {}, {}
    local function watch(svc, c, start)
        local name = recover.container_of(svc, c)
        if watched[name] then return end
        watched[name] = true
        handles[#handles + 1] = agent.task.spawn(watch_component, agent, stage, svc, c, start, w)
        owners[#handles] = svc.name
        for i, cc in ipairs(svc.components or {}) do
            if cc == c then slots[#handles] = i end
        end
    end
    sr.start = recover.recover(agent, { only = own, dry_run = opts.dry_run,
        parallel = opts.parallel or M.START_PARALLEL,
        on_component = not opts.dry_run and watch or nil })
    if sr.start.cancelled then
        cancel_all(agent, handles)
        w.observer.close()
        sr.cancelled = true
        return sr
    end
    if opts.dry_run then
        sr.elapsed = agent.clock.now() - started
        return sr
    end
    -- Components recover did not get to (it could not list): their loops
    -- start them.
    for _, svc in ipairs(order) do
        for _, c in ipairs(svc.components or {}) do
            if (c.desired_state or "running") == "running" then watch(svc, c, nil) end
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
            w.observer.close()
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

    w.observer.close()

    -- Per service, components in their definition order.
    local per = {}
    for i, res in ipairs(results) do
        local name = owners[i]
        per[name] = per[name] or {}
        table.insert(per[name], { slot = slots[i] or 0, res = res })
    end
    for _, svc in ipairs(order) do
        local list = per[svc.name] or {}
        table.sort(list, function(a, b) return a.slot < b.slot end)
        local comps = {}
        for i, e in ipairs(list) do comps[i] = e.res end
        local s = service_result(svc.name, comps)
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
        report.unstaged = recover.recover(agent, { only = rest, dry_run = opts.dry_run,
            parallel = opts.parallel or M.START_PARALLEL })
        if report.unstaged.cancelled then report.cancelled = true end
        if #report.unstaged.failed > 0 then report.healthy = false end
    end
    agent.log.info("boot finished", { healthy = report.healthy, stages = #report.stages })
    progress(opts, { state = "done", healthy = report.healthy })
    return report
end

return M
