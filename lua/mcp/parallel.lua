-- mcp.parallel: bounded fan-out over agent tasks. Every command that acts on
-- many components (deploy, start, restart, recover, boot) goes through it,
-- so a service of 100 components never starts 100 podman processes at once.
local M = {}

M.DEFAULT_LIMIT = 4

--- Runs fn(item, i) for every item with at most `limit` tasks at a time.
--- Returns results, cancelled: results[i] is table.pack(fn(items[i], i)),
--- or { n = 0, error = message } when fn raised (the other items go on);
--- cancelled is true when the calling task was cancelled (the workers are
--- cancelled too, and items not reached have no result).
function M.each(agent, items, limit, fn)
    local results, next_item = {}, 0
    local function worker()
        while true do
            next_item = next_item + 1
            local i = next_item
            if i > #items then return end
            local packed = table.pack(xpcall(fn, debug.traceback, items[i], i))
            if packed[1] then
                results[i] = table.pack(table.unpack(packed, 2, packed.n))
            else
                results[i] = { n = 0, error = tostring(packed[2]) }
                agent.log.error("task failed", { error = results[i].error })
            end
        end
    end
    local handles = {}
    for w = 1, math.min(limit or M.DEFAULT_LIMIT, #items) do handles[w] = agent.task.spawn(worker) end
    for _, h in ipairs(handles) do
        local ok, err = agent.task.wait(h)
        if ok == nil and err == "cancelled" then
            for _, other in ipairs(handles) do agent.task.cancel(other) end
            return results, true
        end
    end
    return results, false
end

return M
