-- mcp.host.daemon: `mcp-agent run`. Serves the gRPC API at once, runs the
-- boot sequence beside it, then serves until SIGTERM/SIGINT (graceful: stop
-- accepting, let calls in flight finish, exit 0). SIGHUP reloads the
-- policies, keeping the old ones when the new ones do not load.
local core = require("mcp.core")
local api = require("mcp.host.api")
local listing = require("mcp.host.listing")
local metrics = require("mcp.host.metrics")
local policies = require("mcp.host.policies")
local supervisor = require("mcp.supervisor")

local M = {}

M.SHUTDOWN_GRACE = 10 -- seconds for calls in flight at SIGTERM
-- Lua that runs this long without yielding (a policy spinning) is stopped
-- with an error naming its line, so the API and the supervisor keep going.
M.TASK_BUDGET = 2

--- Boot progress in the BootStatus message's shape, fed by the boot policy's
--- progress events and finished from its report.
local function boot_tracker(agent, stages_cfg)
    local t = { stages = {} }
    local by_name = {}
    local components = {}
    for _, svc in ipairs(agent.registry.services()) do
        local n = 0
        for _, c in ipairs(svc.components) do
            if c.desired_state == "running" then n = n + 1 end
        end
        components[svc.name] = n
    end
    for i, st in ipairs(stages_cfg) do
        local services = {}
        for j, name in ipairs(st.services or {}) do
            services[j] = { name = name, healthy = false, attempts = 0, seconds_to_healthy = 0,
                            last_error = components[name] and "" or "not in the registry",
                            waiting_for = "", healthy_components = 0 }
        end
        t.stages[i] = { name = st.name, state = "pending", services = services, elapsed_seconds = 0 }
        by_name[st.name] = t.stages[i]
    end
    local started = {}

    function t.progress(ev)
        local st = ev.stage and by_name[ev.stage]
        if not st then return end
        if ev.state == "starting" then
            st.state = "running"
            core.notify.status("booting: stage " .. st.name)
            started[st.name] = agent.clock.now()
        elseif ev.service and ev.state == "waiting" then
            for _, s in ipairs(st.services) do
                if s.name == ev.service then
                    s.waiting_for, s.last_error = ev.container or "", ev.error or ""
                    s.attempts = math.max(s.attempts, ev.attempts or 0)
                end
            end
        elseif ev.service and ev.state == "healthy" then
            for _, s in ipairs(st.services) do
                if s.name == ev.service then
                    s.healthy_components = s.healthy_components + 1
                    if s.waiting_for == ev.container then s.waiting_for, s.last_error = "", "" end
                    if s.healthy_components >= (components[s.name] or 1) then
                        s.healthy = true
                        s.seconds_to_healthy = agent.clock.now() - (started[st.name] or agent.clock.now())
                    end
                end
            end
        elseif ev.state == "healthy" or ev.state == "timed_out" then
            st.state = ev.state
            st.elapsed_seconds = agent.clock.now() - (started[st.name] or agent.clock.now())
        end
    end

    --- The stages for BootStatus, with the running stage's time so far.
    function t.view()
        for _, st in ipairs(t.stages) do
            if st.state == "running" and started[st.name] then
                st.elapsed_seconds = agent.clock.now() - started[st.name]
            end
        end
        return t.stages
    end

    --- Folds the policy's final report in (attempts, reasons).
    function t.finish(report)
        for _, sr in ipairs(report and report.stages or {}) do
            local st = by_name[sr.name]
            if st then
                st.state = sr.cancelled and "failed" or (sr.healthy and "healthy" or "timed_out")
                st.elapsed_seconds = sr.elapsed or st.elapsed_seconds
                for _, s in ipairs(st.services) do
                    for _, r in ipairs(sr.services or {}) do
                        if r.service == s.name then
                            s.healthy = r.healthy or false
                            s.attempts = r.attempts or 0
                            s.seconds_to_healthy = r.time_to_healthy or 0
                            s.last_error = r.reason and tostring(r.reason) or ""
                        end
                    end
                end
            end
        end
    end
    return t
end

-- Runs the boot policy; any error or a report that is not a table ends
-- boot as failed (logged, and said by BootStatus): writes are allowed then.
local function run_boot(agent, state)
    local boot, err = policies.get("boot")
    if not boot then
        agent.log.error("cannot load the boot policy; serving without booting", { error = err })
        state.boot_error = tostring(err)
        return
    end
    local ok, report = xpcall(boot.run, debug.traceback, agent, agent.config.boot or {},
        { progress = function(ev)
            state.boot.progress(ev)
            if ev.stage and not ev.service and (ev.state == "healthy" or ev.state == "timed_out") then
                for _, st in ipairs(state.boot.view()) do
                    if st.name == ev.stage then metrics.boot_stage(st.name, st.elapsed_seconds) end
                end
            end
        end })
    if not ok then
        agent.log.error("boot policy failed", { error = report })
        state.boot_error = tostring(report):match("^[^\n]*")
        return
    end
    if type(report) ~= "table" then
        agent.log.error("boot policy returned no report", { got = type(report) })
        state.boot_error = "the boot policy returned " .. type(report) .. ", not a report"
        return
    end
    state.boot.finish(report)
    for _, st in ipairs(state.boot.view()) do
        if st.state ~= "pending" then metrics.boot_stage(st.name, st.elapsed_seconds) end
    end
    agent.log.info("boot finished", { healthy = report.healthy })
end

function M.run(agent, args)
    if #args > 0 then
        io.stderr:write("mcp-agent: run: unexpected argument ", args[1], "\n")
        return 2
    end
    -- Refuse to start with policies that do not load (like `check`).
    for _, name in ipairs(policies.NAMES) do
        local mod, err = policies.get(name)
        if not mod then
            io.stderr:write("mcp-agent: ", err, "\n")
            return 2
        end
    end
    local cfg = agent.config
    core.task.budget(M.TASK_BUDGET)
    local state = { boot_done = false, started = agent.clock.now() }
    agent.registry = listing.counting_registry(agent.registry, state)
    state.boot = boot_tracker(agent, cfg.boot or {})
    if (cfg.metrics_listen or "") ~= "" then
        local served, _, detail = metrics.serve(cfg.metrics_listen)
        if not served then
            io.stderr:write("mcp-agent: run: [metrics] listen: ", tostring(detail), "\n")
            return 2
        end
        agent.log.info("serving metrics", { listen = cfg.metrics_listen, port = metrics.server:port() })
    end
    agent.metrics = metrics.policy
    local server, err = core.api.serve {
        socket = cfg.socket, grpc_addr = cfg.grpc_addr,
        tls_cert = cfg.tls and cfg.tls.cert, tls_key = cfg.tls and cfg.tls.key,
        tls_client_ca = cfg.tls and cfg.tls.client_ca,
        insecure_loopback = cfg.insecure_loopback,
        handler = api.new(agent, state),
    }
    if not server then
        io.stderr:write("mcp-agent: run: ", tostring(err), "\n")
        return 2
    end
    agent.log.info("serving", { socket = cfg.socket, grpc_addr = cfg.grpc_addr or "",
                                tcp_port = server:tcp_port() })
    core.notify.status("booting")

    -- After boot the node is supervised (SPEC §10).
    local sup = supervisor.new(agent, {
        policy = function() return (policies.get("supervise")) end,
        builtin = function() return require "policy.builtin.supervise" end,
        interval = cfg.monitor_interval,
        drift = cfg.monitor_drift,
        recover = function(a, only)
            local recover = assert(policies.get("recover"))
            return recover.run(a, { only = only })
        end,
        probed = metrics.guard(agent, metrics.probe),
        changed = metrics.guard(agent, metrics.supervised),
        listed = metrics.guard(agent, function(wall) metrics.listed(wall); metrics.sync(agent.registry) end),
    })
    agent.supervisor = sup
    -- supervise.on_event hooks: one task per event, never in the way
    local hooks = require("mcp.hooks").new(agent, { policy = function() return (policies.get("supervise")) end })
    state.event_listeners = state.event_listeners or {}
    table.insert(state.event_listeners, hooks.dispatch)
    table.insert(state.event_listeners, metrics.guard(agent, function(ev) metrics.event(ev.kind) end))
    local boot_task = agent.task.spawn(function()
        local ok, boot_err = pcall(run_boot, agent, state)
        if not ok then
            agent.log.error("boot failed", { error = tostring(boot_err) })
            state.boot_error = tostring(boot_err)
        end
        state.boot_done = true
        metrics.sync(agent.registry)
        core.notify.ready(string.format("%s; %d services; serving %s",
            state.boot_error and "boot failed" or "booted", #(agent.registry.services() or {}), cfg.socket))
        sup.start()
    end)

    local sig
    repeat
        sig = core.signals.wait()
        if sig == "SIGHUP" then
            core.notify.reloading()
            local ok, rerr = policies.reload()
            core.notify.ready(ok and "policies reloaded" or "policy reload refused; old policies kept")
            if ok then
                agent.log.info("policies reloaded")
            else
                agent.log.error("policy reload refused; keeping the old policies", { error = rerr })
            end
        end
    until sig ~= "SIGHUP"

    core.notify.stopping()
    agent.log.info("stopping", { signal = sig, in_flight_grace = M.SHUTDOWN_GRACE })
    agent.task.cancel(boot_task)
    sup.stop()
    server:shutdown(M.SHUTDOWN_GRACE)
    metrics.close()
    agent.log.info("stopped")
    return 0
end

return M
