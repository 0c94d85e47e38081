-- mcp.host.event_bus: wakes the tasks following the event log (WatchEvents)
-- when an event is stored, with nothing but agent tasks: waiters wait on a
-- "pulse" task that sleeps until notify() cancels it; the next wait starts
-- a new pulse. No timer runs while nobody follows.
local M = {}

M.FOREVER = 86400 * 365

function M.new(agent)
    local bus = {}
    local pulse

    --- Waits until the next notify() or timeout seconds.
    function bus.wait(timeout)
        if not pulse then
            pulse = agent.task.spawn(function() agent.clock.sleep(M.FOREVER) end)
        end
        agent.task.wait(pulse, timeout)
    end

    --- Wakes every waiter.
    function bus.notify()
        local p = pulse
        pulse = nil
        if p then agent.task.cancel(p) end
    end

    return bus
end

return M
