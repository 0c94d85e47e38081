-- supervise.lua: what the supervisor does when a component dies (SPEC §10).
--
-- The agent calls on_exit(agent, component, info) when a container of a
-- component that should run has died or vanished, and on_unhealthy(…) when
-- its liveness probe keeps failing. info: service, component, container,
-- exit_code (nil when it vanished), oom, restarts (since it was last
-- stable), running_for (seconds it ran), reason ("died" | "missing" |
-- "unhealthy"). Return the seconds to wait before restarting it (0 = now),
-- or false, reason to give up: it then stays down until `mcp-agent start`,
-- `restart` or `deploy`. The mechanics (state, timers, the stable reset,
-- persistence) are in lua/mcp/supervisor.lua.

local M = {}

M.FIRST_DELAY = 0     -- s: the first restart happens at once
M.BASE_DELAY = 1      -- s: then 1 s, doubling …
M.MAX_DELAY = 60      -- s: … up to a minute
M.JITTER = 0.25       -- ±25 %, so components that die together do not restart together
M.STABLE_AFTER = 600  -- s: up for 10 minutes, its restart count starts again from 0

function M.on_exit(_agent, _component, info)
    if info.restarts == 0 then return M.FIRST_DELAY end
    local delay = math.min(M.MAX_DELAY, M.BASE_DELAY * 2 ^ (info.restarts - 1))
    return delay * (1 + M.JITTER * (2 * math.random() - 1))
end

-- A component that no longer answers is restarted with the same backoff.
M.on_unhealthy = M.on_exit

return M
