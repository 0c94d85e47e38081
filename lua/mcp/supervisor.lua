-- mcp.supervisor: the mechanics of keeping a node converged while `run`
-- serves (SPEC §10), under policies/supervise.lua, which decides whether
-- and when a component that died is restarted.
--
-- Inputs: podman's event stream (agent.runtime.events(), a long-lived
-- child; restarted with backoff when it ends, each start followed by a full
-- list) and a full list every [monitor] interval as a safety net.
-- Per component it keeps: restarts since it was last stable, the last exit
-- code, the state ("running", "backoff", "given up", "exited"), when a
-- pending restart is due, and when it was last started — in memory and in
-- the registry (agent.registry.set_supervision), so a crash loop does not
-- start again from "restart at once" when the agent restarts.
--
-- Rules: desired state "stopped" and inactive services are never
-- restarted; a container mcp.lifecycle is working on is not "died" (a
-- death seen just after such work is checked with an inspect first); the
-- component's `restart` (no | on-failure | always | unless-stopped, unset =
-- unless-stopped) applies; a restart goes through mcp.lifecycle (the same
-- container started again when its spec-hash matches, else recreated).
-- When most supervised containers vanish at once (podman lost its state),
-- one recover pass runs instead of a restart each. Liveness probes
-- (mcp.liveness) report unhealthy components, which on_unhealthy restarts
-- with the same backoff; routes follow readiness (mcp.readiness); drift
-- (mcp.drift) is reported once per change, or fixed with [monitor] drift = "fix".
local lifecycle = require("mcp.lifecycle")
local spec = require("mcp.spec")
local drift = require("mcp.drift")
local liveness = require("mcp.liveness")
local readiness = require("mcp.readiness")
local timefmt = require("mcp.timefmt")
local locks = require("mcp.locks")

local M = {}

M.MAX_DELAY = 86400 -- s: a longer delay from a policy is nonsense, not a plan
M.FALLBACK_DELAY = 60 -- s: when even the built-in policy cannot answer
M.RECENT = 2 -- s: a death this soon after the lifecycle stopped or removed it is verified first
M.STREAM_BACKOFF = { base = 0.5, cap = 30 } -- restarting the events child
-- s: a death the stream has not told of after this long means it stopped
-- producing (podman's `died` reaches us ~0.1-0.3 s after the exit)
M.STREAM_SILENT = 1
M.MANY_AT_ONCE = 0.5 -- this share (and at least 2) down at once: one recover pass
M.BURST_WINDOW = 5 -- s: deaths of stable components this close together count as at once
M.BURST_SETTLE = 0.5 -- s: the recover pass waits this long for the rest of a burst

--- The state text `status` shows for a supervision row (or nil).
function M.describe(row)
    if not row or not row.state then return "" end
    if row.state == "backoff" and row.backoff_until then
        return "backoff until " .. timefmt.format(row.backoff_until)
    end
    return row.state
end

-- A delay a policy returned: a finite number in [0, MAX_DELAY], or nil.
local function sane_delay(d)
    if math.type(d) == nil then return nil end
    if d ~= d or d < 0 or d > M.MAX_DELAY then return nil end
    return d
end

--- A supervisor over `agent`. opts: policy (function returning the
--- supervise policy table: called at every decision, so a reload takes
--- effect), builtin (function returning the built-in one, the fallback for
--- a policy that fails), interval (s between full lists), stream (false: no
--- event stream, lists only), recover (function(agent, only) -> report:
--- the many-at-once pass over `only`, a set of service names), drift
--- ("report" | "fix"), random (jitter source), probed (function(check, ok,
--- seconds) after every liveness probe), changed (function(st) whenever a
--- component's state is persisted), listed (function(wall) after every
--- full list).
function M.new(agent, opts)
    opts = opts or {}
    local sup = {}
    local states = {}   -- container name -> state
    local running = false
    local tasks = {}
    local ready = readiness.new(agent)
    -- the events stream now open, when it opened, and the deaths it told of
    local stream = { current = nil, opened_now = nil, opened_wall = nil }
    local told = {} -- container name -> true once the stream reported its death
    local newest = {} -- container name -> the id of the last one the stream saw created
    local live -- mcp.liveness, made below (its hooks need the functions here)

    local function log_fields(st, extra)
        local f = { service = st.service, component = st.component }
        for k, v in pairs(extra or {}) do f[k] = v end
        return f
    end

    local function persist(st)
        if opts.changed then opts.changed(st) end
        if not agent.registry.set_supervision then return end
        local ok, err = agent.registry.set_supervision(st.service, st.component, {
            restarts = st.restarts, last_exit_code = st.last_exit_code or false, state = st.state or false,
            backoff_until = st.backoff_until or false, reason = st.reason or false,
            started_at = st.started_at or false,
        })
        if not ok then agent.log.warn("cannot store supervisor state", log_fields(st, { error = err })) end
    end

    local function event(st, kind, message, exit_code)
        agent.registry.event(st.service, st.component, kind, message, exit_code)
    end

    -- The registry's view: container name -> service, component (active
    -- services only), read afresh (a deploy may have changed it).
    local function supervised()
        local by = {}
        for _, svc in ipairs(agent.registry.services()) do
            if svc.active then
                for _, c in ipairs(svc.components or {}) do
                    by[lifecycle.container_of(svc, c)] = { service = svc, component = c }
                end
            end
        end
        return by
    end

    local function state_of(name, svc, comp)
        local st = states[name]
        if not st then
            st = { name = name, service = svc.name, component = comp.name, restarts = 0 }
            states[name] = st
        end
        return st
    end

    local function builtin_delay(comp, info)
        local ok, b = pcall(opts.builtin or function() return nil end)
        if ok and b and b.on_exit then
            local fine, d = pcall(b.on_exit, agent, comp, info)
            if fine and sane_delay(d) then return d end
        end
        return M.FALLBACK_DELAY
    end

    -- Asks the policy: seconds to wait, or false, reason. A policy that
    -- raises or answers nonsense is logged and the built-in delay used.
    local function decide(st, comp, info)
        local ok, policy = pcall(opts.policy or function() return nil end)
        local fn = ok and policy and (info.reason == "unhealthy" and policy.on_unhealthy or policy.on_exit)
        if not fn then return builtin_delay(comp, info) end
        local res = table.pack(xpcall(fn, debug.traceback, agent, comp, info))
        if not res[1] then
            agent.log.error("supervise policy failed; using the built-in delay",
                log_fields(st, { error = tostring(res[2]) }))
            return builtin_delay(comp, info)
        end
        if res[2] == false then return false, tostring(res[3] or "the policy gave up") end
        local d = sane_delay(res[2])
        if not d then
            agent.log.error("supervise policy returned no usable delay; using the built-in delay",
                log_fields(st, { got = tostring(res[2]) }))
            return builtin_delay(comp, info)
        end
        return d
    end

    local restart_after, check_drift

    -- Restarts a component now through the lifecycle; a failure counts as
    -- one more death, so the backoff grows. how: nil (start the same
    -- container again when its spec is current), "restart" (it runs but is
    -- unhealthy: stop it first), "recreate" (drifted: make it anew). Routes
    -- come back through readiness: at once without a probe, else at its
    -- first pass.
    local function restart_now_locked(st, exit_code, how)
        local svc = agent.registry.service(st.service)
        local comp
        for _, c in ipairs(svc and svc.components or {}) do
            if c.name == st.component then comp = c end
        end
        if not svc or not svc.active or not comp or comp.desired_state ~= "running" then
            st.state, st.backoff_until = nil, nil
            persist(st)
            return
        end
        if how == "restart" then lifecycle.down(agent, svc, comp) end
        -- what its death said of it, while no later event made that stale,
        -- instead of an inspect (a podman call less on every restart)
        local r = lifecycle.up(agent, svc, comp, { existing = not how and st.record or nil,
                                                    reuse = how ~= "recreate", recreate = how == "recreate",
                                                    routes = false, event = "restarted", why = "supervisor",
                                                    exit_code = exit_code, quiet = st.restarts > 0 })
        st.restarts = st.restarts + 1
        st.backoff_until = nil
        if r.outcome == "failed" or r.outcome == "skipped" then
            st.reason = r.entry.reason
            local info = { service = svc.name, component = comp.name, container = st.name, exit_code = nil,
                           oom = false, restarts = st.restarts, running_for = 0, reason = "died",
                           error = r.entry.reason }
            restart_after(st, comp, info)
            return
        end
        st.state, st.reason, st.started_at = "running", nil, agent.clock.wallclock()
        st.drifted, st.drift_seen, told[st.name] = nil, nil, nil
        persist(st)
        if live then live.reset(st.name) end
        if not comp.health then ready.restore(svc, comp) end
    end

    -- Under the service's lock (mcp.locks): an operator's deploy or stop of
    -- the same service waits for it, and it for them.
    local function restart_now(st, exit_code, how)
        local ok, why = locks.of(agent).with(st.service, function()
            restart_now_locked(st, exit_code, how)
            return true
        end)
        if not ok then agent.log.warn("supervisor: restart of " .. st.name .. " not done", { reason = why }) end
    end

    -- The restart of st, delay seconds from now, in a task of its own.
    -- The delay counts from the death, not from when it was seen.
    local function schedule(st, delay, exit_code, how)
        st.timer = agent.task.spawn(function()
            local since = (not how and st.died_at) and agent.clock.now() - st.died_at or 0
            local left = delay - since
            if left > 0 and not agent.clock.sleep(left) then return end
            st.timer = nil
            restart_now(st, exit_code, how)
        end)
    end

    -- Decides and schedules (or gives up) for a component that is down
    -- (or unhealthy, or drifted: `how` as restart_now takes it).
    function restart_after(st, comp, info, how)
        local delay, why = decide(st, comp, info)
        if delay == false then
            st.state, st.reason, st.backoff_until = "given up", why, nil
            persist(st)
            event(st, "gave-up", string.format("gave up on %s after %d restarts: %s", st.name, st.restarts, why),
                info.exit_code)
            agent.log.warn("supervisor gave up on " .. st.name, log_fields(st, { reason = why }))
            return
        end
        st.state = "backoff"
        st.backoff_until = agent.clock.wallclock() + delay
        persist(st)
        if delay > 0 then
            event(st, "backoff", string.format("restarting %s in %.1fs (restart %d)", st.name, delay, st.restarts + 1),
                info.exit_code)
        end
        schedule(st, delay, info.exit_code, how)
    end

    --- The policy's stable period (s): up this long, the restart count resets.
    local function stable_after()
        local ok, policy = pcall(opts.policy or function() return nil end)
        local v = ok and policy and policy.STABLE_AFTER
        return (type(v) == "number" and v > 0) and v or 600
    end

    -- Seconds st has run since the agent last started it (nil: unknown);
    -- up longer than the policy's stable period, its restart count resets.
    local function ran_for(st)
        local running_for = st.started_at and math.max(0, agent.clock.wallclock() - st.started_at) or nil
        if running_for and running_for >= stable_after() then st.restarts = 0 end
        return running_for
    end

    -- Deaths of stable components (no restarts pending) by container, for
    -- telling "podman lost its state" from crashes: many within
    -- BURST_WINDOW are one recover pass (SPEC §10 many at once).
    -- burst_until: a little after a pass, a loss seen late (a slow stop, the
    -- next list) is taken as part of the same burst, by another pass.
    local deaths, pass, burst_until = {}, nil, nil

    local function wanted_count()
        local n = 0
        for _, e in pairs(supervised()) do
            if e.component.desired_state == "running" then n = n + 1 end
        end
        return n
    end

    -- The rounds of one recover pass (one at a time: `pass` is set while
    -- they run): each takes the deaths recorded so far; deaths that join
    -- while a round runs are taken by the next. more: the burst had a pass
    -- already; settle: wait BURST_SETTLE for the rest of the burst first.
    local function pass_rounds(more, settle)
        repeat
            if settle and not agent.clock.sleep(M.BURST_SETTLE) then return end
            settle = true
            local names = {}
            for k in pairs(deaths) do
                names[#names + 1] = k
                local st = states[k]
                if st and st.timer then agent.task.cancel(st.timer); st.timer = nil end
            end
            table.sort(names)
            deaths = {}
            sup.recover_all(names, more)
            more = true
        until next(deaths) == nil
        burst_until = agent.clock.now() + M.BURST_WINDOW
    end

    -- pass_rounds, then no pass: one that failed must not hold every later
    -- death as "in a burst".
    local function run_pass(more, settle)
        local ok, err = pcall(pass_rounds, more, settle)
        pass = nil
        if not ok then agent.log.error("supervisor: recover pass failed", { error = tostring(err) }) end
    end

    -- Records a death; true when it belongs to a burst that one recover
    -- pass (started here, BURST_SETTLE later) takes care of.
    local function in_burst(name)
        local now = agent.clock.now()
        deaths[name] = now
        if pass then return true end
        local n = 0
        for k, at in pairs(deaths) do
            if now - at <= M.BURST_WINDOW then n = n + 1 else deaths[k] = nil end
        end
        local straggler = burst_until and now <= burst_until
        if not opts.recover or (not straggler and (n < 2 or n < wanted_count() * M.MANY_AT_ONCE)) then
            return false
        end
        pass = agent.task.spawn(function() run_pass(straggler, true) end)
        return true
    end

    -- Many containers a list found missing: their recover pass, run here
    -- (or, when one is running, by its next round).
    local function recover_missing(names)
        local now = agent.clock.now()
        for _, name in ipairs(names) do deaths[name] = now end
        if pass then return true end
        pass = true
        run_pass(burst_until ~= nil and now <= burst_until, false)
        return true
    end

    -- A container of ours is down (reason "died" or "missing"). rec: what
    -- the runtime said of it, when known.
    local function handle_down(name, entry, reason, exit_code, rec)
        local svc, comp = entry.service, entry.component
        if comp.desired_state ~= "running" then return end
        local st = state_of(name, svc, comp)
        -- the stream and a list may both report one death: one handles it
        if st.timer or st.handling or st.state == "given up" or st.state == "exited" then return end
        local busy, done = lifecycle.activity(agent, name)
        if busy then return end
        st.handling = true
        local guard <close> = setmetatable({}, { __close = function() st.handling = nil end }) -- luacheck: ignore 211
        if done and agent.clock.now() - done < M.RECENT then
            -- the agent itself just stopped or replaced it: look before acting
            local now_rec, ireason = agent.runtime.inspect(name)
            if now_rec and now_rec.state == "running" then return end
            if not now_rec and ireason ~= "no such container" then return end
            rec = now_rec or nil
            if not now_rec then reason = "missing" end
        end
        local running_for = ran_for(st)
        st.last_exit_code = exit_code
        st.died_at, st.record = agent.clock.now(), rec
        local what = reason == "missing" and "vanished" or ("died (exit code " .. tostring(exit_code) .. ")")
        event(st, "died", string.format("%s %s", name, what), exit_code)
        agent.log.warn(name .. " " .. what, log_fields(st, { exit_code = exit_code }))
        ready.withdraw(svc, comp, what)
        local mode = comp.restart or "unless-stopped"
        if mode == "no" or (mode == "on-failure" and exit_code == 0) then
            st.state, st.backoff_until = "exited", nil
            persist(st)
            return
        end
        if st.restarts == 0 and in_burst(name) then return end
        restart_after(st, comp, {
            service = svc.name, component = comp.name, container = name, exit_code = exit_code,
            oom = rec and rec.oom or false, restarts = st.restarts, running_for = running_for or 0,
            reason = reason,
        })
    end

    -- A running container made from another spec than the registry's (or
    -- not by the agent): one `drift` event per change; with [monitor] drift
    -- = "fix" it is recreated through the lifecycle, with the backoff.
    function check_drift(name, e, rec)
        local st = state_of(name, e.service, e.component)
        local why, have = drift.of(rec, e.service, e.component)
        if not why then
            if st.drifted then
                st.drifted, st.drift_seen = nil, nil
                if st.state == "drifted" then st.state = "running"; persist(st) end
            end
            return
        end
        local seen = have or "(none)"
        if st.drift_seen == seen or st.timer or st.handling then return end
        st.drift_seen, st.drifted = seen, true
        event(st, "drift", string.format("%s drifted: %s", name, why))
        agent.log.warn(name .. " drifted: " .. why, log_fields(st))
        if opts.drift == "fix" then
            local running_for = ran_for(st) -- first: up long enough, its count resets
            restart_after(st, e.component, { service = st.service, component = st.component, container = name,
                exit_code = nil, oom = false, restarts = st.restarts, reason = "drifted",
                running_for = running_for or 0 }, "recreate")
        else
            st.state = "drifted"
            persist(st)
        end
    end

    -- Whether the open stream missed this exit: it happened after the
    -- stream opened, STREAM_SILENT ago or more, and no `died` came.
    local function stream_missed(name, rec)
        if not stream.current or told[name] then return false end
        local f, age, after_open = rec.finished_at
        if type(f) == "number" then -- the fake runtime on its own clock
            age, after_open = agent.clock.now() - f, f - stream.opened_now
        else
            local t = timefmt.parse(f)
            if not t then return false end
            age, after_open = agent.clock.wallclock() - t, t - stream.opened_wall
        end
        return after_open > 0 and age >= M.STREAM_SILENT
    end

    --- One full list: every supervised component that is down is handled;
    --- most of them gone at once is one recover pass.
    function sup.reconcile()
        local asked = agent.clock.now()
        local list, reason = agent.runtime.list()
        if not list then
            agent.log.warn("supervisor: cannot list containers", { error = tostring(reason) })
            return nil, reason
        end
        sup.last_list = agent.clock.wallclock()
        if opts.listed then opts.listed(sup.last_list) end
        local by = {}
        for _, c in ipairs(list) do by[c.name] = c end
        -- a container the lifecycle worked on since the list was asked for:
        -- the list is older than that work, not a verdict on it
        local function stale(name)
            local busy, _, last = lifecycle.activity(agent, name)
            return busy or (last ~= nil and last >= asked)
        end
        local want, missing, total = supervised(), {}, 0
        for name, e in pairs(want) do
            if e.component.desired_state == "running" then
                total = total + 1
                if not by[name] and not stale(name) then missing[#missing + 1] = name end
            end
        end
        table.sort(missing)
        if #missing >= 2 and #missing >= total * M.MANY_AT_ONCE and opts.recover then
            return recover_missing(missing)
        end
        for _, name in ipairs(missing) do handle_down(name, want[name], "missing", nil, nil) end
        local missed
        for name, e in pairs(want) do
            local rec = by[name]
            if stale(name) then rec = nil end
            if rec and rec.state ~= "running" then
                if stream_missed(name, rec) then missed = name end
                handle_down(name, e, "died", rec.exit_code, rec)
            elseif rec and e.component.desired_state == "running" then
                check_drift(name, e, rec)
            end
        end
        if missed then
            agent.log.warn("supervisor: podman's event stream stopped producing (it never told of " .. missed
                .. "'s death); restarting it")
            stream.current:close() -- its reader starts a new one, then lists
        end
        live.sync(want)
        ready.retry_pending(function(name)
            local e = want[name]
            if e then return e.service, e.component end
        end)
        return true
    end

    --- Podman lost (most of) its state: one recover pass, one event. more:
    --- these went down after a pass of the same burst.
    function sup.recover_all(missing, more)
        local what = more and "more went down with them" or "containers went down at once"
        agent.log.warn(string.format("supervisor: %d %s; running one recover pass", #missing, what))
        local only, want = {}, supervised()
        for _, name in ipairs(missing) do
            local e = want[name]
            if e then only[e.service.name] = true end
        end
        local ok, report = pcall(opts.recover, agent, only)
        local recovered = ok and type(report) == "table" and #(report.recovered or {}) or 0
        agent.registry.event("", nil, "recovered", string.format(
            "%d %s (%s); one recover pass recreated %d", #missing, what, table.concat(missing, ", "), recovered))
        local wall = agent.clock.wallclock()
        for _, name in ipairs(missing) do
            local st, e = states[name], want[name]
            -- the pass restarted it: counted, so a component that keeps dying is
            -- left to its own backoff instead of joining the next burst
            if st then st.state, st.started_at, st.restarts = "running", wall, st.restarts + 1; persist(st) end
            if e then ready.restore(e.service, e.component) end -- recover registered them: say so
        end
        return true
    end

    --- One event from the runtime's stream.
    function sup.on_event(ev)
        if ev.status == "create" and ev.id and ev.id ~= "" then newest[ev.name] = ev.id end
        if ev.status ~= "died" then
            local st = states[ev.name]
            -- someone else changed it: what its death said of it no longer holds
            if st and (ev.status == "start" or ev.status == "remove" or ev.status == "create") then st.record = nil end
            if ev.status == "start" and st and st.state == "exited" then st.state = "running"; persist(st) end
            return
        end
        told[ev.name] = true
        local now_id = newest[ev.name]
        if now_id and ev.id and ev.id ~= "" and ev.id ~= now_id then
            -- a container replaced since (its death told late): not a death of the one there now
            agent.log.debug("supervisor: " .. ev.name .. ": a replaced container died", { id = ev.id })
            return
        end
        local e = supervised()[ev.name]
        -- what the event says of the container spares a podman call when it restarts
        if e then
            handle_down(ev.name, e, "died", ev.exit_code,
                { name = ev.name, id = ev.id, state = "exited", exit_code = ev.exit_code, labels = ev.labels })
        end
    end

    -- Liveness (SPEC §10): probe what should be up; an unhealthy verdict
    -- is decided by on_unhealthy with the same backoff as a death.
    live = liveness.new(agent, {
        random = opts.random,
        probed = opts.probed,
        running = function(name)
            local st = states[name]
            return not (st and (st.timer or st.handling or st.state == "given up" or st.state == "exited"
                or st.state == "backoff"))
        end,
        unhealthy = function(name, e, err)
            local st = state_of(name, e.service, e.component)
            if st.timer or st.handling then return end
            st.state, st.reason = "unhealthy", err
            persist(st)
            event(st, "unhealthy", string.format("%s is unhealthy: %s", name, err))
            agent.log.warn(name .. " is unhealthy", log_fields(st, { error = err }))
            ready.withdraw(e.service, e.component, "unhealthy: " .. err)
            local running_for = ran_for(st)
            restart_after(st, e.component, { service = st.service, component = st.component, container = name,
                exit_code = nil, oom = false, restarts = st.restarts, running_for = running_for or 0,
                reason = "unhealthy", error = err }, "restart")
        end,
        healthy = function(name, e, first)
            if not first then
                agent.registry.event(e.service.name, e.component.name, "healthy",
                    name .. " passes its probe again")
            end
            ready.restore(e.service, e.component)
        end,
    })

    local function read_events()
        local backoff = require("policy.backoff").new(M.STREAM_BACKOFF)
        while running do
            local s, err = agent.runtime.events()
            if s then
                stream.current, stream.opened_now, stream.opened_wall = s, agent.clock.now(), agent.clock.wallclock()
                sup.reconcile() -- what happened while no stream listened
                while true do
                    local ev, why, detail = s:next(3600)
                    if ev then
                        backoff.reset()
                        sup.on_event(ev)
                    elseif why == "cancelled" then
                        s:close()
                        stream.current = nil
                        return
                    elseif why ~= "timeout" then
                        agent.log.warn("supervisor: podman's event stream ended; restarting it",
                            { reason = tostring(why), detail = detail })
                        break
                    end
                end
                s:close()
                stream.current = nil
            else
                agent.log.warn("supervisor: cannot follow podman's events", { error = tostring(err) })
            end
            if not agent.clock.sleep(backoff.next()) then return end
        end
    end

    local function list_periodically()
        local interval = opts.interval or 10
        while running do
            if not agent.clock.sleep(interval) then return end
            sup.reconcile()
        end
    end

    -- Restart state from before a daemon restart: pending restarts resume.
    local function load()
        if not agent.registry.supervisions then return end
        local by = supervised()
        local wall = agent.clock.wallclock()
        for _, row in ipairs(agent.registry.supervisions() or {}) do
            local name = spec.container_name(row.service, row.component)
            local e = by[name]
            if e then
                local st = state_of(name, e.service, e.component)
                st.restarts, st.last_exit_code = row.restarts or 0, row.last_exit_code
                st.state, st.reason, st.started_at = row.state, row.reason, row.started_at
                if row.state == "backoff" then
                    local left = math.max(0, (row.backoff_until or wall) - wall)
                    st.backoff_until = wall + left
                    schedule(st, left, st.last_exit_code)
                end
            end
        end
    end

    function sup.start()
        if running then return end
        running = true
        load()
        if opts.stream ~= false and agent.runtime.events then
            tasks[#tasks + 1] = agent.task.spawn(read_events)
        else
            tasks[#tasks + 1] = agent.task.spawn(sup.reconcile)
        end
        tasks[#tasks + 1] = agent.task.spawn(list_periodically)
    end

    function sup.stop()
        running = false
        live.stop()
        for _, h in ipairs(tasks) do agent.task.cancel(h) end
        for _, st in pairs(states) do
            if st.timer then agent.task.cancel(st.timer); st.timer = nil end
        end
        tasks = {}
    end

    --- The operator acted on a component (start, restart, deploy, stop, rm):
    --- a pending restart is dropped and a given-up state cleared.
    function sup.forget(service, component)
        for name, st in pairs(states) do
            if st.service == service and (component == nil or st.component == component) then
                if st.timer then agent.task.cancel(st.timer) end
                states[name] = nil
                ready.forget(name)
                live.reset(name)
            end
        end
        if agent.registry.clear_supervision then agent.registry.clear_supervision(service, component) end
        -- a deploy or start may bring health checks: probe them from now on
        if running then live.sync(supervised()) end
    end

    --- The in-memory state of a container (tests, status).
    function sup.state(name) return states[name] end

    --- The liveness view of a container: { fails=, healthy=, last_error= } or nil.
    function sup.liveness(name) return live.view(name) end

    return sup
end

return M
