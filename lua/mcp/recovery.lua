-- mcp.recovery: the mechanics of recreating containers from the registry
-- (SPEC §5), shared by the recover and boot policies and the supervisor.
-- The policies decide when and how much (parallelism, retries); this module
-- does one pass, each component through mcp.lifecycle.
--
-- For every active service and every component with desired_state
-- "running" whose container is not running (exited, created or missing):
-- remove any stale container of that name, run it from mcp.spec.container,
-- record an event, and (re-)register its routes with mc-proxy / ensure TLS
-- certs for L7 routes (failures there are warnings; running containers get
-- their routes registered too, AddRoute being idempotent). A missing image is
-- skipped with a warning. Running containers, stopped components and
-- inactive services are otherwise left alone. opts.dry_run fills `planned`
-- and touches nothing. Services are recovered concurrently (at most
-- opts.parallel at a time); the report is sorted by service, then component.

local lifecycle = require("mcp.lifecycle")
local parallel = require("mcp.parallel")
local locks = require("mcp.locks")
local fmt_reason = require("mcp.reason")

local M = {}

M.DEFAULT_PARALLEL = parallel.DEFAULT_LIMIT

--- The runtime's containers as name -> record, or nil, reason.
function M.containers_by_name(agent)
    local list, reason, detail = agent.runtime.list()
    if not list then return nil, fmt_reason(reason, detail) end
    local by = {}
    for _, c in ipairs(list) do by[c.name] = c end
    return by
end

local container_of = lifecycle.container_of

-- The list's record of a container, unless the lifecycle worked on it since
-- the list was asked for (another task did, while this one waited for the
-- service's lock): then the list is older than that work, and the runtime is
-- asked again. nil: missing.
local function current(agent, name, listed, listed_at)
    local _, _, last = lifecycle.activity(agent, name)
    if last == nil or last < listed_at then return listed end
    local rec, reason = agent.runtime.inspect(name)
    if rec or reason == "no such container" then return rec or nil end
    return listed -- the runtime cannot say: keep what the list said
end

-- lifecycle outcomes in the report's terms
local REPORTED = { started = "recovered", created = "recovered" }

--- Brings one component to running (or, dry run, plans it). `existing` is
--- the runtime record of its container or nil (missing); opts.dry_run plans
--- only, opts.quiet logs warnings at debug level (repeated retries). Returns
--- an outcome { outcome = "recovered"|"already_running"|"skipped"|"failed"|"planned",
---   entry = {service=, component=, container=, reason=/action=}, warnings = {...} }.
function M.component(agent, service, component, existing, opts)
    opts = opts or {}
    -- A running container the agent made from an older definition (its
    -- mcp.spec-hash differs: e.g. a deploy killed between storing and
    -- replacing) is not "already running": it is replaced. One without the
    -- label was not made by the agent and is left alone (drift reports it).
    local labels = existing and existing.labels
    local outdated = existing and existing.state == "running" and type(labels) == "table"
        and labels["mcp.spec-hash"] ~= nil and not lifecycle.matches_spec(existing, service, component)
    local r = lifecycle.up(agent, service, component, {
        existing = existing or false, recreate = outdated or nil, event = "recovered", why = "recover",
        dry_run = opts.dry_run, quiet = opts.quiet,
        route_attempts = opts.route_attempts, route_delays = opts.route_delays,
    })
    r.outcome = REPORTED[r.outcome] or r.outcome
    return r
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

    local listed_at = agent.clock.now()
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
    local results, cancelled = parallel.each(agent, jobs, opts.parallel or M.DEFAULT_PARALLEL, function(job)
        -- one operation at a time on a service (mcp.locks), as every command
        return locks.of(agent).with(job.service.name, function()
            local out = {}
            for i, c in ipairs(job.components) do
                local name = container_of(job.service, c)
                out[i] = M.component(agent, job.service, c, current(agent, name, containers[name], listed_at), copts)
                if opts.on_component then opts.on_component(job.service, c, out[i]) end
            end
            return out
        end)
    end)
    local errors = {}

    if cancelled then
        report.cancelled = true
        report.warnings[#report.warnings + 1] = "recover cancelled"
    end
    local rows = {}
    for i, job in ipairs(jobs) do
        local per = results[i] and results[i][1]
        if results[i] and results[i].error then errors[#errors + 1] = results[i].error end
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
