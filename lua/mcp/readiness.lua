-- mcp.readiness: a component's routes at mc-proxy follow whether it can
-- serve (SPEC §10): withdrawn while it is down, in backoff or unhealthy
-- (a `route-withdrawn` event), added back once it runs and passes its
-- probe (`route-restored`). An mc-proxy that refuses is retried with
-- backoff at every retry_pending() (the supervisor calls it at each full
-- list); the registry's routes stay the truth.
local routes = require("mcp.routes")
local lifecycle = require("mcp.lifecycle")

local M = {}

M.RETRY = { base = 1, cap = 60 } -- s between retries of a failed restore

-- Whether mc-proxy has anything of the component's to serve.
local function has_routes(component)
    return #routes.routable(component) > 0
end
M.has_routes = has_routes

function M.new(agent)
    local r = {}
    local withdrawn = {} -- container name -> { service=, component=, pending = next retry time | nil, tries = }

    local function log_failure(msg)
        agent.log.warn(msg)
    end

    --- Takes the component's routes out of mc-proxy (once per outage).
    function r.withdraw(service, component, why)
        if not agent.proxy or not has_routes(component) then return end
        local name = lifecycle.container_of(service, component)
        if withdrawn[name] then return end
        withdrawn[name] = { service = service.name, component = component.name, tries = 0 }
        routes.unregister(agent, component, log_failure)
        agent.registry.event(service.name, component.name, "route-withdrawn",
            string.format("routes of %s withdrawn from mc-proxy: %s", name, why))
    end

    --- Puts them back; on failure retried later (retry_pending).
    --- -> true when registered (or nothing to do).
    function r.restore(service, component)
        local name = lifecycle.container_of(service, component)
        local w = withdrawn[name]
        if not w then return true end
        local _, failed = routes.register_retrying(agent, service, component, log_failure, { attempts = 1 })
        if failed > 0 then
            w.tries = w.tries + 1
            w.pending = agent.clock.now() + math.min(M.RETRY.cap, M.RETRY.base * 2 ^ (w.tries - 1))
            return false
        end
        withdrawn[name] = nil
        agent.registry.event(service.name, component.name, "route-restored",
            string.format("routes of %s back at mc-proxy", name))
        return true
    end

    --- Whether the component's routes are out now.
    function r.is_withdrawn(name) return withdrawn[name] ~= nil end

    --- Retries restores that failed and are due; `lookup(name)` gives the
    --- current service, component (nil: gone, forget it).
    function r.retry_pending(lookup)
        local now = agent.clock.now()
        for name, w in pairs(withdrawn) do
            if w.pending and w.pending <= now then
                local svc, comp = lookup(name)
                if svc then r.restore(svc, comp) else withdrawn[name] = nil end
            end
        end
    end

    --- The operator took over (stop, rm, deploy): no longer ours to restore.
    function r.forget(name) withdrawn[name] = nil end

    return r
end

return M
