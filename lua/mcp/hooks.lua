-- mcp.hooks: supervise.on_event(agent, event), when the policy has one, runs
-- in a task of its own for every event recorded (SPEC §10): a hook that
-- raises is logged with its traceback, one that runs past its budget is
-- cancelled, and neither ever delays the supervisor, which only spawns.
local M = {}

M.BUDGET = 10 -- s a hook may take (a webhook call included)
M.MAX_IN_FLIGHT = 32 -- hooks running at once; past that events are not hooked (logged)

--- opts: policy (function returning the supervise policy), budget, max_in_flight.
function M.new(agent, opts)
    opts = opts or {}
    local h = { in_flight = 0, dropped = 0 }
    local budget = opts.budget or M.BUDGET
    local max = opts.max_in_flight or M.MAX_IN_FLIGHT

    local function run(fn, event)
        local ok, err = xpcall(fn, debug.traceback, agent, event)
        if not ok then
            agent.log.error("supervise on_event failed", { kind = event.kind, service = event.service,
                                                           error = tostring(err) })
        end
    end

    --- Hands one event (the Event message's shape) to on_event, if any.
    function h.dispatch(event)
        local ok, policy = pcall(opts.policy or function() return nil end)
        local fn = ok and type(policy) == "table" and policy.on_event
        if type(fn) ~= "function" then return end
        if h.in_flight >= max then
            h.dropped = h.dropped + 1
            agent.log.warn("supervise on_event: too many hooks running; event not hooked",
                { kind = event.kind, service = event.service, in_flight = h.in_flight })
            return
        end
        h.in_flight = h.in_flight + 1
        local task = agent.task.spawn(run, fn, event)
        agent.task.spawn(function()
            local done, why = agent.task.wait(task, budget)
            if done == nil and why == "timeout" then
                agent.task.cancel(task)
                agent.log.warn(string.format("supervise on_event took longer than %gs; cancelled", budget),
                    { kind = event.kind, service = event.service })
                agent.task.wait(task, 1)
            end
            h.in_flight = h.in_flight - 1
        end)
    end

    return h
end

return M
