-- mcp.boot: the mechanics of a boot stage (SPEC §6), under policies/boot.lua,
-- which walks the stages and holds the numbers. A stage starts only its own
-- services (through mcp.recovery and mcp.lifecycle, `parallel` podman runs
-- at a time) and probes each component as soon as its own container is up,
-- concurrently, each with its own backoff, until healthy or the stage
-- timeout; a foundation stage retries for ever (restarting containers that
-- died) until the boot task is cancelled.
--
-- Probe target: mcp.health.probe_spec (the component's `health`, else the
-- stage's method on its first route, else first published port). The host
-- port comes from the spec when it is pinned, else from one `inspect` once
-- the container runs. A component with no port to probe counts as healthy
-- once its container runs.
--
-- Cost: podman calls take 0.1-0.5 s each and compete with the containers
-- being started, so a probe loop calls podman only when it must: it asks
-- whether its container still runs only after probes kept failing for
-- liveness_after seconds, then at most every liveness_interval (after a
-- foundation's timeout retry_liveness_interval), and the components of a
-- stage share one `list` for that (never an `inspect` per probe).
--
-- settings (all required unless said; policies/boot.lua fills them):
--   parallel, stage_timeout, probe_timeout (s), probe_delays() and
--   retry_delays() (fresh backoffs: .next() -> s), liveness_after,
--   liveness_interval, retry_liveness_interval (s), dry_run, progress
--   (function(event) or nil).

local recovery = require("mcp.recovery")
local lifecycle = require("mcp.lifecycle")
local health = require("mcp.health")

local M = {}

local container_of = lifecycle.container_of

local function progress(settings, event)
    if settings.progress then settings.progress(event) end
end

-- Brings a container that is not running back through the lifecycle: the
-- same container started again when its spec is current, else recreated.
-- Returns true or nil, reason.
local function restart(agent, service, component, record, quiet, because)
    -- record nil: unknown, the lifecycle looks (a container that is there
    -- must not be removed for an image that is gone)
    local r = lifecycle.up(agent, service, component, { existing = record, reuse = true,
        event = "restarted", why = "boot", detail = because, quiet = quiet })
    if r.outcome == "failed" or r.outcome == "skipped" then return nil, r.entry.reason end
    return true
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
        local by, reason = recovery.containers_by_name(agent)
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
    st.pinned = target and health.pinned_host_port(component, target.port)
    st.hp, st.resolved = st.pinned, st.pinned ~= nil
    return st
end

-- Asks the runtime about a running container when the loop needs it: once
-- to learn an unpinned host port (inspect), and whenever probes kept failing
-- for LIVENESS_AFTER s, at most every `interval` s (the shared list).
-- Marks st down (with st.record, st.down) when it is not running.
local function check_runtime(agent, name, target, st, w, interval)
    local now = agent.clock.now()
    local rec, reason
    if target and not st.resolved then
        rec, reason = agent.runtime.inspect(name)
        if not rec and reason == "no such container" then rec = false end
    elseif now - st.since >= w.settings.liveness_after and now - st.checked >= interval then
        rec, reason = w.observer.lookup(name, math.max(st.since, st.checked))
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
            st.hp, st.resolved = health.host_port(rec, target.port), true
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
    local name = container_of(service, component)
    local res = { component = component.name, container = name, healthy = false,
                  attempts = 0, restarts = 0 }
    local settings = w.settings
    local fast = settings.probe_delays()
    local slow
    local target = health.probe_spec(component, stage)
    local probe_timeout = settings.probe_timeout
    local st = initial_state(agent, component, target, start)
    local last_down, restart_failed
    while true do
        res.attempts = res.attempts + 1
        local late = agent.clock.now() >= w.timeout_at
        local ok, reason
        if st.up then
            reason = check_runtime(agent, name, target, st, w,
                late and settings.retry_liveness_interval or settings.liveness_interval)
        end
        if not st.up then
            reason = st.down
            -- Warn on the first failure of a kind; a long foundation retry repeats at debug level.
            local repeated = last_down == reason
            local log = repeated and agent.log.debug or agent.log.warn
            last_down = reason
            log(string.format("%s is not running (%s), restarting it", name, reason),
                { service = service.name, exit_code = st.exit_code })
            local done, rreason = restart(agent, service, component, st.record, repeated, reason)
            restart_failed = not done
            if done then
                res.restarts = res.restarts + 1
                st.up, st.record, st.exit_code = true, nil, nil
                st.since, st.checked = agent.clock.now(), agent.clock.now()
                st.hp, st.resolved = st.pinned, st.pinned ~= nil
                reason = check_runtime(agent, name, target, st, w, settings.liveness_interval)
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
                ok, reason = health.probe(agent, target.check, st.hp, target.path, t)
            end
        end
        if ok then
            w.waiting[name] = nil
            res.healthy = true
            res.time_to_healthy = agent.clock.now() - w.started
            agent.log.info(name .. " is healthy", { service = service.name, attempts = res.attempts,
                seconds = string.format("%.3f", res.time_to_healthy) })
            progress(settings, { stage = stage.name, service = service.name, component = component.name,
                                 container = name, state = "healthy" })
            return res
        end
        res.reason = reason
        if reason == "cancelled" then res.cancelled = true; return res end
        -- what the stage waits for, and why (BootStatus, the foundation's log)
        if w.waiting[name] ~= reason then
            w.waiting[name] = reason
            progress(settings, { stage = stage.name, service = service.name, component = component.name,
                                 container = name, state = "waiting", error = tostring(reason),
                                 attempts = res.attempts })
        end
        local delay
        -- a restart that failed (no image, podman refusing) is not retried at probe speed
        if late or restart_failed then
            slow = slow or settings.retry_delays()
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
function M.stage(agent, stage, foundation, services_by_name, settings)
    local started = agent.clock.now()
    local timeout = stage.timeout or settings.stage_timeout
    local sr = { name = stage.name, foundation = foundation, services = {}, unknown = {},
                 healthy = true, timed_out = false }
    if stage.health and not health.CHECKS[stage.health] then
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
    progress(settings, { stage = stage.name, state = "starting" })

    -- Start only this stage's services, all at once; each component's probe
    -- loop begins as soon as its own container is up.
    local deadline = not foundation and (started + timeout) or nil
    local w = { settings = settings, waiting = {}, started = started, timeout_at = started + timeout,
                deadline = deadline, observer = new_observer(agent) }
    local handles, owners, slots, watched = {}, {}, {}, {}
    local function watch(svc, c, start)
        local name = container_of(svc, c)
        if watched[name] then return end
        watched[name] = true
        handles[#handles + 1] = agent.task.spawn(watch_component, agent, stage, svc, c, start, w)
        owners[#handles] = svc.name
        for i, cc in ipairs(svc.components or {}) do
            if cc == c then slots[#handles] = i end
        end
    end
    sr.start = recovery.recover(agent, { only = own, dry_run = settings.dry_run,
        parallel = settings.parallel, on_component = not settings.dry_run and watch or nil })
    if sr.start.cancelled then
        cancel_all(agent, handles)
        w.observer.close()
        sr.cancelled = true
        return sr
    end
    if settings.dry_run then
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
            local waiting = {}
            for name, why in pairs(w.waiting) do waiting[#waiting + 1] = name .. " (" .. tostring(why) .. ")" end
            table.sort(waiting)
            agent.log.warn(string.format("foundation stage %s not healthy after %gs; retrying until it is",
                tostring(stage.name), timeout), { waiting_for = table.concat(waiting, ", ") })
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
    progress(settings, { stage = stage.name, state = sr.healthy and "healthy" or "timed_out" })
    return sr
end


--- Starts the services of no stage once the stages are done (SPEC §6):
--- the recover report of them, or nil when there are none.
function M.unstaged(agent, stages, settings)
    local staged, only, any = {}, {}, false
    for _, stage in ipairs(stages) do
        for _, name in ipairs(stage.services or {}) do staged[name] = true end
    end
    for _, svc in ipairs(agent.registry.services()) do
        if svc.active and not staged[svc.name] then only[svc.name] = true; any = true end
    end
    if not any then return nil end
    agent.log.info("boot: starting services in no stage")
    return recovery.recover(agent, { only = only, dry_run = settings.dry_run, parallel = settings.parallel })
end

--- The registry's services by name, as a stage wants them.
function M.services_by_name(agent)
    local by = {}
    for _, svc in ipairs(agent.registry.services()) do by[svc.name] = svc end
    return by
end

return M
