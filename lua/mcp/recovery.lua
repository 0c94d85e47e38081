-- mcp.recovery: the mechanics of recreating containers from the registry
-- (SPEC §5), shared by the recover and boot policies. The policies decide
-- when and how much (parallelism, retries); this module does one pass.
--
-- For every active service and every component with desired_state
-- "running" whose container is not running (exited, created or missing):
-- remove any stale container of that name, run it from mcp.spec.container,
-- record an event, and (re-)register its routes with mc-proxy / ensure TLS
-- certs for L7 routes (failures there are warnings; running containers get
-- their routes registered too, AddRoute being idempotent). A missing image is
-- skipped with a warning: when there is no container to remove, `run`
-- itself tells (its "no such image" answer saves a podman call per
-- component); a stale container is only removed once its image is known to
-- exist. Running containers, stopped components and inactive services are
-- otherwise left alone. opts.dry_run fills `planned` and touches nothing.
-- Services are recovered concurrently (at most opts.parallel at a time); the
-- report is sorted by service, then component.

local spec = require "mcp.spec"
local routes = require "mcp.routes"

local M = {}

M.DEFAULT_PARALLEL = 4
M.DEFAULT_ROUTE_ATTEMPTS = 3

local fmt_reason = require "mcp.reason"
M.fmt_reason = fmt_reason

--- The runtime's containers as name -> record, or nil, reason.
function M.containers_by_name(agent)
    local list, reason, detail = agent.runtime.list()
    if not list then return nil, fmt_reason(reason, detail) end
    local by = {}
    for _, c in ipairs(list) do by[c.name] = c end
    return by
end

local function container_of(service, component)
    return component.container or spec.container_name(service.name, component.name)
end
M.container_of = container_of

-- Registers a component's routes with mc-proxy (a certificate first for L7
-- routes), retried with backoff; every failure is a warning: the container
-- runs regardless, and the next recover tries again.
-- opts.route_attempts, opts.route_delays (a function returning a fresh
-- backoff, from the calling policy) shape the retries.
local function register_routes(agent, service, component, warn, opts)
    opts = opts or {}
    routes.register_retrying(agent, service, component, warn,
        { attempts = opts.route_attempts or M.DEFAULT_ROUTE_ATTEMPTS,
          delays = opts.route_delays and opts.route_delays() })
end
M.register_routes = register_routes

--- Brings one component to running (or, dry run, plans it). `existing` is
--- the runtime record of its container or nil; opts.dry_run plans only,
--- opts.quiet logs warnings at debug level (repeated retries). Returns an outcome
--- { outcome = "recovered"|"already_running"|"skipped"|"failed"|"planned",
---   entry = {service=, component=, container=, reason=/action=}, warnings = {...} }.
function M.component(agent, service, component, existing, opts)
    opts = opts or {}
    local name = container_of(service, component)
    local entry = { service = service.name, component = component.name, container = name }
    local result = { entry = entry, warnings = {} }
    local function warn(msg)
        result.warnings[#result.warnings + 1] = msg
        local log = opts.quiet and agent.log.debug or agent.log.warn
        log(msg, { service = service.name, component = component.name })
    end
    local function outcome(kind, reason)
        result.outcome = kind
        entry.reason = reason
        return result
    end

    if existing and existing.state == "running" then
        -- AddRoute is idempotent: routes missed while mc-proxy was down get in now
        if not opts.dry_run then register_routes(agent, service, component, warn, opts) end
        return outcome("already_running")
    end

    local function skip_missing_image()
        warn(string.format("%s: image %s not found, skipped", name, tostring(component.image)))
        return outcome("skipped", "no such image")
    end
    -- A dry run must say "skipped" without running; a stale container must
    -- not be removed for an image that is gone. Otherwise `run` tells.
    if opts.dry_run or existing then
        local exists, ireason, idetail = agent.runtime.image_exists(component.image)
        if exists == false then
            return skip_missing_image()
        elseif exists == nil then
            return outcome("failed", "image check failed: " .. fmt_reason(ireason, idetail))
        end
    end

    if opts.dry_run then
        entry.action = existing and "recreate" or "run"
        return outcome("planned")
    end

    if existing then
        local ok, reason, detail = agent.runtime.remove(name)
        if not ok then
            return outcome("failed", "cannot remove stale container: " .. fmt_reason(reason, detail))
        end
    end
    local run_spec = spec.container(service, component)
    local id, reason, detail = agent.runtime.run(run_spec)
    if not id and reason == "name in use" then
        -- podman lost its database but its storage still holds the name:
        -- `ps -a` shows nothing, yet run refuses. Clear the name and retry once.
        local removed, rreason, rdetail = agent.runtime.remove(name)
        if not removed then
            return outcome("failed", "cannot remove stale container: " .. fmt_reason(rreason, rdetail))
        end
        id, reason, detail = agent.runtime.run(run_spec)
    end
    if not id and reason == "no such image" then return skip_missing_image() end
    if not id then
        agent.registry.event(service.name, component.name, "failed",
            "recover could not run " .. name .. ": " .. fmt_reason(reason, detail))
        return outcome("failed", fmt_reason(reason, detail))
    end
    agent.registry.event(service.name, component.name, "recovered",
        string.format("recreated %s from %s (was %s)", name, tostring(component.image),
            existing and tostring(existing.state) or "missing"))
    agent.log.info("recovered " .. name, { service = service.name, component = component.name, id = id })
    register_routes(agent, service, component, warn, opts)
    return outcome("recovered")
end

--- The components recover looks at: active services, desired "running".
--- Returns an array of jobs {service=, components={...}} sorted by name.
function M.work(services, only)
    local jobs = {}
    for _, svc in ipairs(services) do
        if svc.active and (only == nil or only[svc.name]) then
            local comps = {}
            for _, c in ipairs(svc.components or {}) do
                if (c.desired_state or "running") == "running" then comps[#comps + 1] = c end
            end
            if #comps > 0 then jobs[#jobs + 1] = { service = svc, components = comps } end
        end
    end
    table.sort(jobs, function(a, b) return a.service.name < b.service.name end)
    return jobs
end

local function new_report(dry_run)
    return { recovered = {}, already_running = {}, skipped = {}, failed = {}, planned = {},
             warnings = {}, dry_run = dry_run and true or false }
end

-- Runs fn(job) for every job with at most `parallel` tasks at a time.
-- Results land in results[i] for jobs[i], so their order never depends on timing.
local function for_each_bounded(agent, jobs, parallel, fn)
    local results = {}
    local next_job = 0
    local function worker()
        while true do
            next_job = next_job + 1
            local i = next_job
            if i > #jobs then return end
            results[i] = fn(jobs[i])
        end
    end
    local handles = {}
    for w = 1, math.min(parallel, #jobs) do handles[w] = agent.task.spawn(worker) end
    local errors = {}
    for _, h in ipairs(handles) do
        local ok, err = agent.task.wait(h)
        if ok == nil and err == "cancelled" then
            -- We were cancelled: stop the workers too, and say so.
            for _, other in ipairs(handles) do agent.task.cancel(other) end
            return results, errors, true
        elseif not ok then
            errors[#errors + 1] = tostring(err)
        end
    end
    return results, errors, false
end

--- Recovers the given service names (nil: all) — the core of run().
--- opts: dry_run, parallel, only (set of service names), on_component
--- (function(service, component, outcome) called in the worker as soon as
--- each component is done, outcome as M.component returns it: boot.lua
--- starts probing a container while the others are still being started).
function M.recover(agent, opts)
    opts = opts or {}
    local dry_run = opts.dry_run or (agent.config and agent.config.dry_run) or false
    local report = new_report(dry_run)
    local jobs = M.work(agent.registry.services(), opts.only)
    if #jobs == 0 then return report end

    local containers, lreason = M.containers_by_name(agent)
    if not containers then
        local msg = "cannot list containers: " .. lreason
        report.warnings[#report.warnings + 1] = msg
        agent.log.error(msg)
        for _, job in ipairs(jobs) do
            for _, c in ipairs(job.components) do
                report.failed[#report.failed + 1] = { service = job.service.name, component = c.name,
                    container = container_of(job.service, c), reason = msg }
            end
        end
        return report
    end

    local copts = { dry_run = dry_run, route_attempts = opts.route_attempts,
                    route_delays = opts.route_delays }
    local results, errors, cancelled = for_each_bounded(agent, jobs, opts.parallel or M.DEFAULT_PARALLEL, function(job)
        local out = {}
        for i, c in ipairs(job.components) do
            out[i] = M.component(agent, job.service, c, containers[container_of(job.service, c)], copts)
            if opts.on_component then opts.on_component(job.service, c, out[i]) end
        end
        return out
    end)

    if cancelled then
        report.cancelled = true
        report.warnings[#report.warnings + 1] = "recover cancelled"
    end
    local rows = {}
    for i, job in ipairs(jobs) do
        local per = results[i]
        for j, c in ipairs(job.components) do
            local r = per and per[j]
            if not r then
                r = { outcome = "failed", warnings = {}, entry = { service = job.service.name,
                      component = c.name, container = container_of(job.service, c),
                      reason = cancelled and "cancelled" or "recover task failed" } }
            end
            rows[#rows + 1] = r
        end
    end
    table.sort(rows, function(a, b)
        if a.entry.service ~= b.entry.service then return a.entry.service < b.entry.service end
        return a.entry.component < b.entry.component
    end)
    for _, err in ipairs(errors) do
        report.warnings[#report.warnings + 1] = "recover task failed: " .. err
    end
    for _, r in ipairs(rows) do
        table.insert(report[r.outcome], r.entry)
        for _, w in ipairs(r.warnings) do report.warnings[#report.warnings + 1] = w end
    end
    return report
end

return M
