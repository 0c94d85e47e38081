-- mcp.locks: one operation at a time per service (deploy, start, stop,
-- restart, rm, the recover of it and the supervisor's restarts), so two
-- deploys of one service cannot interleave and the containers always end as
-- the last stored definition says. A second caller waits, bounded; the
-- waiting suspends only its task (on an mcp.pulse the holder notifies
-- when it lets go). Not re-entrant: nothing that holds a
-- service's lock may ask for it again.
local pulse = require("mcp.pulse")

local M = {}

M.WAIT = 120 -- s a caller waits for the lock before giving up with "busy"

local per_agent = setmetatable({}, { __mode = "k" })

--- The lock table of an agent: locks.of(agent).with(name, fn, ...).
function M.of(agent)
    local l = per_agent[agent]
    if l then return l end
    l = {}
    local held = {} -- name -> { released = a pulse (mcp.pulse) its waiters wait on }
    per_agent[agent] = l

    --- Runs fn(...) holding the lock `name`; its results, or nil, "busy",
    --- message when the lock did not come within WAIT seconds, or nil,
    --- "cancelled". An error in fn is raised again after
    --- the lock is let go.
    function l.with(name, fn, ...)
        local deadline = agent.clock.now() + M.WAIT
        while held[name] do
            local h = held[name]
            local left = deadline - agent.clock.now()
            if left <= 0 then
                return nil, "busy", string.format("another operation on %s has not finished in %gs", name, M.WAIT)
            end
            local ok, why = h.released.wait(left)
            -- "cancelled" also answers a pulse ended by the release; with the
            -- same holder still there it is this task that was cancelled
            if ok == nil and why == "cancelled" and held[name] == h then return nil, "cancelled" end
        end
        held[name] = { released = pulse.new(agent) }
        local res = table.pack(xpcall(fn, debug.traceback, ...))
        local h = held[name]
        held[name] = nil
        h.released.notify()
        if not res[1] then error(res[2], 0) end
        return table.unpack(res, 2, res.n)
    end

    --- Whether `name` is held now.
    function l.held(name) return held[name] ~= nil end

    return l
end

return M
