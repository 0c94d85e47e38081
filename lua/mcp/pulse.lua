-- mcp.pulse: tasks waiting for "something happened" with nothing but agent
-- tasks: waiters wait on a pulse task that sleeps until notify() cancels it;
-- the next wait starts a new pulse. No timer runs while nobody waits. The
-- WatchEvents followers wait on one (an event was stored), and so do the
-- callers queued for a service's lock (mcp.locks).
local M = {}

M.FOREVER = 86400 * 365

function M.new(agent)
    local p = {}
    local pulse

    --- Waits until the next notify() or timeout seconds (nil: no limit).
    --- Returns what agent.task.wait does: nil, "cancelled" also when the
    --- pulse was ended by notify(); nil, "timeout" when the time ran out.
    function p.wait(timeout)
        if not pulse then
            pulse = agent.task.spawn(function() agent.clock.sleep(M.FOREVER) end)
        end
        return agent.task.wait(pulse, timeout)
    end

    --- Wakes every waiter.
    function p.notify()
        local ended = pulse
        pulse = nil
        if ended then agent.task.cancel(ended) end
    end

    return p
end

return M
