-- mcp.host.listing: ListServices without rework. Dashboards poll it, so the
-- runtime's containers are listed at most once per OBSERVED_TTL seconds
-- (concurrent callers share one refresh), and the packed answer is kept until
-- the registry changes (counted by counting_registry) or the containers are
-- listed again.
local core = require("mcp.core")
local ops = require("mcp.host.ops")

local M = {}

local METHOD = "/mcp.agent.v1.AgentService/ListServices"

-- How stale the containers behind ListServices may be: one `podman ps` a
-- second serves any number of callers.
M.OBSERVED_TTL = 1.0

--- The runtime's containers by name, refreshed at most every OBSERVED_TTL
--- seconds; concurrent callers share one refresh. -> cache {by=, err=, version=}
local function observed_cache(agent)
    local c = { version = 0, at = -math.huge }
    local refreshing
    function c.get()
        if agent.clock.now() - c.at < M.OBSERVED_TTL then return c end
        if not refreshing then
            refreshing = agent.task.spawn(function()
                local by, err = ops.observed_by_name(agent)
                c.by, c.err, c.at, c.version = by, err, agent.clock.now(), c.version + 1
            end)
        end
        local mine = refreshing
        agent.task.wait(mine)
        if refreshing == mine then refreshing = nil end
        return c
    end
    function c.expire() c.at = -math.huge end
    return c
end

--- A registry whose writes bump state.registry_gen (cached answers key on
--- it), and whose events, once stored, go to every function in
--- state.event_listeners (followers wake, hooks run) in the Event message's
--- shape.
function M.counting_registry(registry, state)
    state.registry_gen = state.registry_gen or 0
    local w = setmetatable({}, { __index = registry })
    for _, name in ipairs({ "deploy", "set_desired", "set_active", "delete", "set_supervision",
                            "clear_supervision" }) do
        local f = registry[name]
        w[name] = function(...)
            state.registry_gen = state.registry_gen + 1
            return f(...)
        end
    end
    local event = registry.event
    w.event = function(service, component, kind, message, exit_code)
        local r = table.pack(event(service, component, kind, message, exit_code))
        if r[1] then
            local ev = { time_unix_ms = math.floor(core.clock.wallclock() * 1000), service = service or "",
                         component = component or "", kind = kind, message = message or "",
                         exit_code = exit_code or 0 }
            for _, listener in ipairs(state.event_listeners or {}) do listener(ev) end
        end
        return table.unpack(r, 1, r.n)
    end
    return w
end

--- The daemon's listing over agent and state (state.registry_gen):
--- l.packed() -> the ListServicesResponse as packed bytes (may wait for the
--- shared refresh); l.expire() after a call that changed containers.
function M.new(agent, state)
    local observed = observed_cache(agent)
    local cache = {}
    local l = {}

    local function cached(version)
        return cache.gen == (state.registry_gen or 0) and cache.version == version
    end

    function l.packed()
        if agent.clock.now() - observed.at < M.OBSERVED_TTL and cached(observed.version) then
            return cache.packed
        end
        local obs = observed.get()
        if cached(obs.version) then return cache.packed end
        local gen = state.registry_gen or 0
        local services = agent.registry.services() -- read with gen: no yield between
        local packed = core.api.pack(METHOD, ops.list_from(services, obs.by, obs.err, ops.supervision_rows(agent)))
        cache = { gen = gen, version = obs.version, packed = packed }
        return packed
    end

    l.expire = observed.expire
    return l
end

return M
