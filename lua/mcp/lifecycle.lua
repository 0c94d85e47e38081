-- mcp.lifecycle: the one way a component's container is brought to running
-- and taken down. deploy, start, restart, recover, boot and the supervisor
-- all come here, and this is the only caller of agent.runtime.run (besides
-- the fake runtime and the dry-run wrapper), so every path gets the same
-- stale-container removal, image check, name-in-use retry, routes with
-- retry, certificates and event.
local spec = require("mcp.spec")
local routes = require("mcp.routes")
local fmt_reason = require("mcp.reason")

local M = {}

M.DEFAULT_ROUTE_ATTEMPTS = 3
M.STOP_TIMEOUT = 10 -- seconds podman waits between SIGTERM and SIGKILL

local function container_of(service, component)
    return component.container or spec.container_name(service.name, component.name)
end
M.container_of = container_of

-- What the agent itself is doing to each container: the supervisor must not
-- take a container this module is stopping or replacing for one that died.
-- agent -> { [container] = { busy = n, done = clock time of the last end } }
local activity = setmetatable({}, { __mode = "k" })

local function activity_of(agent, name)
    local per = activity[agent]
    if not per then per = {}; activity[agent] = per end
    local a = per[name]
    if not a then a = { busy = 0 }; per[name] = a end
    return a
end

-- A to-be-closed mark: the container is busy until the variable goes out
-- of scope; `kills` says the work stops or removes a container (its death
-- is then the agent's doing), as opposed to only starting one.
local function working_on(agent, name, kills)
    local a = activity_of(agent, name)
    a.busy = a.busy + 1
    return setmetatable({}, { __close = function()
        a.busy = a.busy - 1
        a.last = agent.clock.now()
        if kills then a.killed = a.last end
    end })
end

--- Whether this module is working on the container now, when (agent clock)
--- it last finished stopping or removing it, and when it last finished any
--- work on it (nil: never).
function M.activity(agent, name)
    local a = activity_of(agent, name)
    return a.busy > 0, a.killed, a.last
end

--- Whether a runtime record was created from the component's current spec
--- (its mcp.spec-hash label matches): such a container can simply be
--- started again; anything else must be recreated.
function M.matches_spec(record, service, component)
    local labels = record and record.labels
    if type(labels) ~= "table" then return false end
    local want = spec.container(service, component).labels["mcp.spec-hash"]
    return labels["mcp.spec-hash"] == want
end

--- Registers a component's routes with mc-proxy (a certificate first for
--- L7 routes), retried with backoff; every failure is a warning: the
--- container runs regardless, and the next recover tries again.
--- opts.route_attempts, opts.route_delays (a function returning a fresh
--- backoff) shape the retries.
function M.register_routes(agent, service, component, warn, opts)
    opts = opts or {}
    return routes.register_retrying(agent, service, component, warn,
        { attempts = opts.route_attempts or M.DEFAULT_ROUTE_ATTEMPTS,
          delays = opts.route_delays and opts.route_delays() })
end

-- Runs the spec; podman's "name in use" after it lost its database (its
-- storage still holds the name while `ps -a` shows nothing) is cleared
-- once and the run retried. -> id | nil, reason, detail
local function run_clearing_name(agent, name, run_spec)
    local id, reason, detail = agent.runtime.run(run_spec)
    if id or reason ~= "name in use" then return id, reason, detail end
    -- A container podman does know by that name, made by someone else in
    -- the meantime, is not ours to remove (SPEC §10 drift).
    local rec = agent.runtime.inspect(name)
    if rec and not (rec.labels and rec.labels["mcp.spec-hash"]) then
        return nil, "name in use", "a container the agent did not create holds the name " .. name
    end
    activity_of(agent, name).killed = agent.clock.now()
    local removed, rreason, rdetail = agent.runtime.remove(name)
    if not removed then return nil, "cannot remove stale container", fmt_reason(rreason, rdetail) end
    return agent.runtime.run(run_spec)
end

--- Pulls a missing image (deploy only: SPEC §5, recover and the supervisor
--- never pull), saying so on the log. -> true | nil, message
local function pull_image(agent, image)
    agent.log.info("pulling image " .. tostring(image), { image = image })
    local ok, reason, detail = agent.runtime.pull(image)
    if not ok then return nil, string.format("cannot pull %s: %s", tostring(image), fmt_reason(reason, detail)) end
    local last = tostring(reason or ""):match("([^\n]+)\n?$")
    agent.log.info("pulled image " .. tostring(image), { image = image, progress = last })
    return true
end

--- Brings one component to running (or, dry run, plans it).
--- opts:
---   existing   the runtime record of its container; false: known to be
---              missing; nil: unknown (inspected here)
---   recreate   replace the container even when it runs (deploy)
---   reuse      start a stopped container again when its spec-hash label
---              matches instead of recreating it (start, restarts)
---   event      event kind to record when something was done ("recovered",
---              "restarted", …); nil records only failures
---   why        who asks, for messages ("recover", "deploy", …)
---   exit_code  recorded with the event (the supervisor's restarts)
---   routes     false: leave the routes to the caller (the supervisor adds
---              them back once the component passes its probe)
---   detail     why, appended to the event's message
---   pull       pull the image when it is not present (deploy with
---              [agent] pull = "missing")
---   dry_run, quiet (warnings at debug level), route_attempts, route_delays
--- Returns { outcome = "already_running" | "started" | "created" | "skipped"
---           | "failed" | "planned", entry = { service=, component=,
---           container=, reason= | action= }, warnings = {…}, id = }
function M.up(agent, service, component, opts)
    opts = opts or {}
    local name = container_of(service, component)
    -- a death after this is the agent's doing only if it removed a container (marked there)
    local mark <close> = working_on(agent, name, false) -- luacheck: ignore 211
    local why = opts.why or "start"
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
    local function failed(reason)
        if not opts.dry_run then
            agent.registry.event(service.name, component.name, "failed",
                string.format("%s could not run %s: %s", why, name, reason))
        end
        return outcome("failed", reason)
    end

    local existing = opts.existing
    if existing == nil then
        local rec, reason, detail = agent.runtime.inspect(name)
        if rec then
            existing = rec
        elseif reason == "no such container" then
            existing = false
        else
            return failed("cannot inspect: " .. fmt_reason(reason, detail))
        end
    end

    if existing and existing.state == "running" and not opts.recreate then
        -- AddRoute is idempotent: routes missed while mc-proxy was down get in now
        if not opts.dry_run then M.register_routes(agent, service, component, warn, opts) end
        return outcome("already_running")
    end

    local function skip_missing_image()
        warn(string.format("%s: image %s not found, skipped", name, tostring(component.image)))
        return outcome("skipped", "no such image")
    end
    local reusable = existing and opts.reuse and existing.state ~= "running"
        and M.matches_spec(existing, service, component)
    -- A dry run must say "skipped" without running; a container must not be
    -- removed for an image that is gone. Otherwise `run` tells, and starting
    -- the same container again needs no image check at all.
    if opts.dry_run or (existing and not reusable) then
        local exists, ireason, idetail = agent.runtime.image_exists(component.image)
        if exists == false and opts.pull and not opts.dry_run then
            local pulled, perr = pull_image(agent, component.image)
            if not pulled then return failed(perr) end
        elseif exists == false then
            return skip_missing_image()
        elseif exists == nil then
            return failed("image check failed: " .. fmt_reason(ireason, idetail))
        end
    end

    if opts.dry_run then
        entry.action = reusable and "start" or (existing and "recreate" or "run")
        return outcome("planned")
    end

    local how, id
    if reusable then
        local ok, reason, detail = agent.runtime.start(name)
        if ok then
            how = "started"
        else
            agent.log.warn("cannot start " .. name .. " again, recreating it",
                { reason = fmt_reason(reason, detail) })
        end
    end
    if not how then
        if reusable then -- start failed: it is recreated after all, image first
            local exists = agent.runtime.image_exists(component.image)
            if exists == false then return skip_missing_image() end
        end
        if existing then
            agent.log.debug("removing " .. name .. " to recreate it")
            local a = activity_of(agent, name)
            a.killed = agent.clock.now()
            local ok, reason, detail = agent.runtime.remove(name)
            if not ok then return failed("cannot remove stale container: " .. fmt_reason(reason, detail)) end
        end
        local reason, detail
        id, reason, detail = run_clearing_name(agent, name, spec.container(service, component))
        if not id and reason == "no such image" and opts.pull then
            local pulled, perr = pull_image(agent, component.image)
            if not pulled then return failed(perr) end
            id, reason, detail = run_clearing_name(agent, name, spec.container(service, component))
        end
        if not id and reason == "no such image" then return skip_missing_image() end
        if not id then return failed(fmt_reason(reason, detail)) end
        how = "created"
    end
    result.id = id
    if opts.event then
        local msg
        if how == "started" then
            msg = string.format("%s started %s again", why, name)
        else
            msg = string.format("%s recreated %s from %s (was %s)", why, name, tostring(component.image),
                existing and tostring(existing.state) or "missing")
        end
        if opts.detail then msg = msg .. " (" .. tostring(opts.detail) .. ")" end
        agent.registry.event(service.name, component.name, opts.event, msg, opts.exit_code)
    end
    agent.log.info(string.format("%s: %s %s", why, how, name),
        { service = service.name, component = component.name, id = id })
    if opts.routes ~= false then M.register_routes(agent, service, component, warn, opts) end
    return outcome(how)
end

--- Takes a component down: its routes leave mc-proxy first, then the
--- container stops. warn(msg) hears route failures. -> true | nil, reason
function M.down(agent, service, component, warn)
    local mark <close> = working_on(agent, container_of(service, component), true) -- luacheck: ignore 211
    routes.unregister(agent, component, warn or function() end)
    local ok, reason, detail = agent.runtime.stop(container_of(service, component), M.STOP_TIMEOUT)
    if ok or reason == "no such container" then return true end
    return nil, fmt_reason(reason, detail)
end

--- Removes a component's container (and its routes at mc-proxy).
--- -> true | nil, reason
function M.remove(agent, service, component, warn)
    local mark <close> = working_on(agent, container_of(service, component), true) -- luacheck: ignore 211
    routes.unregister(agent, component, warn or function() end)
    local ok, reason, detail = agent.runtime.remove(container_of(service, component))
    if ok then return true end
    return nil, fmt_reason(reason, detail)
end

--- Removes the containers labelled with the service that no component of
--- `service` (as stored now) accounts for — left by a redeploy that renamed
--- or dropped components — and their routes at mc-proxy. Returns the names
--- removed, or nil, reason when the runtime could not be listed.
function M.remove_orphans(agent, service, warn)
    warn = warn or function() end
    local list, reason, detail = agent.runtime.list()
    if not list then return nil, fmt_reason(reason, detail) end
    local wanted = {}
    for _, c in ipairs(service.components or {}) do wanted[container_of(service, c)] = true end
    local removed = {}
    for _, rec in ipairs(list) do
        local labels = rec.labels or {}
        if labels["mcp.service"] == service.name and not wanted[rec.name] then
            local mark <close> = working_on(agent, rec.name, true) -- luacheck: ignore 211
            local ok, rreason, rdetail = agent.runtime.remove(rec.name)
            if ok then
                removed[#removed + 1] = rec.name
                agent.registry.event(service.name, labels["mcp.component"], "removed",
                    string.format("removed %s: component %s is no longer in the definition", rec.name,
                        tostring(labels["mcp.component"])))
            else
                warn(string.format("cannot remove %s (component no longer defined): %s", rec.name,
                    fmt_reason(rreason, rdetail)))
            end
        end
    end
    routes.remove_stale(agent, service, warn)
    return removed
end

return M
