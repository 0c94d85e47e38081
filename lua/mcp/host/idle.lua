-- mcp.host.idle: after IDLE_RELEASE seconds without a call the daemon gives
-- back the memory a burst of calls left behind (garbage, free heap pages).
local core = require("mcp.core")

local M = {}

M.IDLE_RELEASE = 2.0

--- r.touch() after every call; once calls stop for IDLE_RELEASE seconds, one
--- task releases memory. No timer runs while the daemon stays idle.
function M.releaser(agent)
    local r = { last = 0 }
    local pending
    function r.touch()
        r.last = agent.clock.now()
        if pending then return end
        pending = agent.task.spawn(function()
            while true do
                local left = r.last + M.IDLE_RELEASE - agent.clock.now()
                if left <= 0 then break end
                if not agent.clock.sleep(left) then pending = nil; return end
            end
            pending = nil
            core.release_memory()
        end)
    end
    return r
end

return M
