-- mcp.sched: a deterministic discrete-event scheduler on a virtual clock.
--
-- Tasks are coroutines. A task suspends only through this module (sleep,
-- wait); the scheduler then advances virtual time straight to the next event,
-- so an hour of policy time costs microseconds. Ordering is deterministic:
-- tasks woken at the same virtual time run in the order they were scheduled
-- (FIFO). The yield protocol is private: policies see only sleep/wait/spawn.
--
--   local sched = require("mcp.sched").new()
--   local h = sched.spawn(function() sched.sleep(5); return "done" end)
--   sched.run_until_idle()
--   h.wait()  --> true, "done"     (sched.now() == 5)
--
-- All functions are plain closures (called with a dot), matching the
-- `agent.clock` / `agent.task` conventions of docs/LUA_API.md.

local M = {}

-- A private value yielded by suspended tasks: a coroutine that yields
-- anything else is not one of ours (see resume_task).
local SUSPEND = setmetatable({}, { __tostring = function() return "mcp.sched.suspend" end })
-- Raised inside a cancelled task that keeps trying to wait: unwinds it.
local CANCELLED = setmetatable({}, { __tostring = function() return "task cancelled" end })

-- How many waits a cancelled task may still make (each returns at once with
-- nil, "cancelled") before it is unwound: lets cleanup code run a few calls,
-- but a loop that ignores "cancelled" cannot spin for ever.
local CANCELLED_WAIT_BUDGET = 100

local function traceback(err)
    if err == CANCELLED then return err end
    return debug.traceback(tostring(err), 2)
end

-- Binary min-heap of timers ordered by (time, seq).
local function heap_less(a, b)
    if a.time ~= b.time then return a.time < b.time end
    return a.seq < b.seq
end

local function heap_push(h, item)
    h[#h + 1] = item
    local i = #h
    while i > 1 do
        local p = i // 2
        if heap_less(h[i], h[p]) then
            h[i], h[p] = h[p], h[i]
            i = p
        else
            break
        end
    end
end

local function heap_pop(h)
    local top = h[1]
    local last = table.remove(h)
    if #h > 0 then
        h[1] = last
        local i, n = 1, #h
        while true do
            local l, r, m = 2 * i, 2 * i + 1, i
            if l <= n and heap_less(h[l], h[m]) then m = l end
            if r <= n and heap_less(h[r], h[m]) then m = r end
            if m == i then break end
            h[i], h[m] = h[m], h[i]
            i = m
        end
    end
    return top
end

-- Creates a scheduler. opts.start: initial virtual time (default 0);
-- opts.max_steps: resumes allowed per run call before it raises (a guard
-- against tasks that sleep(0) for ever; default 10 million).
function M.new(opts)
    opts = opts or {}
    local S = {}
    local now = opts.start or 0
    local max_steps = opts.max_steps or 10000000
    local seq = 0
    local timers = {}       -- heap of {time, seq, task, token}
    local ready = {}        -- FIFO of {task, values...}: ready[head..tail]
    local ready_head, ready_tail = 1, 0
    local by_co = setmetatable({}, { __mode = "k" })
    local next_id = 0

    local function next_seq()
        seq = seq + 1
        return seq
    end

    local function make_ready(task, token, ...)
        ready_tail = ready_tail + 1
        ready[ready_tail] = { task = task, token = token, n = select("#", ...), ... }
    end

    local function current_task(what)
        local co, main = coroutine.running()
        local task = not main and by_co[co] or nil
        if not task then
            error((what or "this call") .. " must be called inside an agent task", 3)
        end
        return task
    end

    -- Suspends the calling task until something calls wake(task, token, ...).
    -- Returns the values given to wake. A cancelled task does not suspend.
    local function suspend(task)
        if task.cancelled then
            task.cancelled_waits = task.cancelled_waits + 1
            if task.cancelled_waits > CANCELLED_WAIT_BUDGET then error(CANCELLED, 0) end
            return nil, "cancelled"
        end
        task.token = task.token + 1
        task.suspended = true
        return coroutine.yield(SUSPEND)
    end

    -- Wakes a suspended task, but only if it is still waiting for this token
    -- (a stale timer or waiter from an earlier suspension is ignored).
    local function wake(task, token, ...)
        if task.suspended and task.token == token and not task.finished then
            task.suspended = false
            task.token = task.token + 1
            make_ready(task, nil, ...)
            return true
        end
        return false
    end

    local function add_timer(at, fn)
        local t = { time = at, seq = next_seq(), fn = fn }
        heap_push(timers, t)
        return t
    end

    local function finish(task, status, n, results)
        task.finished = true
        task.status = status
        task.results = results
        task.nresults = n
        local waiters = task.waiters
        task.waiters = {}
        for _, w in ipairs(waiters) do w(task) end
    end

    local function result_of(task)
        if task.status == "cancelled" or (task.cancelled and task.status ~= "error") then
            return nil, "cancelled"
        elseif task.status == "error" then
            return false, task.results[1]
        end
        return true, table.unpack(task.results, 1, task.nresults)
    end

    local function resume_task(task, ...)
        local co = task.co
        local res = table.pack(coroutine.resume(co, ...))
        if coroutine.status(co) == "dead" then
            if not res[1] then
                -- Only reachable if the body wrapper itself failed.
                finish(task, "error", 1, { traceback(res[2]) })
            else
                -- res[2] is the wrapper's xpcall status, then results.
                local ok = res[2]
                if ok then
                    finish(task, task.cancelled and "cancelled" or "done", res.n - 2,
                        table.pack(table.unpack(res, 3, res.n)))
                elseif res[3] == CANCELLED then
                    finish(task, "cancelled", 0, {})
                else
                    finish(task, "error", 1, { res[3] })
                end
            end
        elseif res[2] ~= SUSPEND then
            -- The task body yielded on its own: not part of the protocol.
            task.suspended = false
            coroutine.close(co)
            finish(task, "error", 1,
                { "task yielded outside the agent API (use agent.clock.sleep / agent.task.wait)" })
        end
    end

    --- The current virtual time in seconds.
    function S.now() return now end

    --- Sleeps the calling task for `seconds` of virtual time (negative = 0).
    --- Returns true, or nil, "cancelled" when the task was cancelled.
    function S.sleep(seconds)
        if type(seconds) ~= "number" or seconds ~= seconds then
            error("sleep: seconds must be a number", 2)
        end
        local task = current_task("agent.clock.sleep")
        if task.cancelled then return suspend(task) end
        local token = task.token + 1
        task.timer = add_timer(now + math.max(0, seconds), function() wake(task, token, true) end)
        return suspend(task)
    end

    --- Starts fn(...) as a new task; it runs as soon as the caller suspends
    --- (or at the next run call when spawned from outside any task).
    --- Returns a handle with .wait(timeout), .cancel(), .status(), .id.
    function S.spawn(fn, ...)
        if type(fn) ~= "function" and not (getmetatable(fn) or {}).__call then
            error("spawn: expected a function", 2)
        end
        local args = table.pack(...)
        next_id = next_id + 1
        local task = { id = next_id, token = 0, waiters = {}, cancelled = false,
                       cancelled_waits = 0, finished = false, suspended = false }
        task.co = coroutine.create(function()
            return xpcall(fn, traceback, table.unpack(args, 1, args.n))
        end)
        by_co[task.co] = task
        local handle = { id = task.id }
        function handle.wait(timeout) return S.wait(handle, timeout) end
        function handle.cancel() return S.cancel(handle) end
        function handle.status()
            if task.finished then return task.status end
            return task.cancelled and "cancelling" or (task.started and "running" or "new")
        end
        task.handle = handle
        handle._task = task
        make_ready(task, nil)
        return handle
    end

    local function task_of(handle, fname)
        if type(handle) ~= "table" or type(handle._task) ~= "table" then
            error(fname .. ": expected a task handle", 3)
        end
        return handle._task
    end

    --- Waits for a task. Returns true, results... when it finished; false,
    --- errmsg (with traceback) when it raised; nil, "timeout" when `timeout`
    --- seconds ran out first (nil = for ever); nil, "cancelled" when it (or
    --- the waiting task) was cancelled.
    function S.wait(handle, timeout)
        local target = task_of(handle, "wait")
        if timeout ~= nil and type(timeout) ~= "number" then
            error("wait: timeout must be a number or nil", 2)
        end
        if target.finished or target.cancelled then return result_of(target) end
        local me = current_task("agent.task.wait")
        if me == target then error("wait: a task cannot wait for itself", 2) end
        if me.cancelled then return suspend(me) end
        local token = me.token + 1
        local timer
        target.waiters[#target.waiters + 1] = function(t)
            if timer then timer.dead = true end
            wake(me, token, result_of(t))
        end
        if timeout then
            timer = add_timer(now + math.max(0, timeout), function() wake(me, token, nil, "timeout") end)
        end
        return suspend(me)
    end

    --- Cancels a task: its pending wait returns nil, "cancelled", and so do
    --- its later waits; waiting on it returns nil, "cancelled" at once.
    --- Returns true when the task was still running.
    function S.cancel(handle)
        local task = task_of(handle, "cancel")
        if task.finished or task.cancelled then return false end
        task.cancelled = true
        if not task.started then
            -- Never ran: it never will.
            finish(task, "cancelled", 0, {})
            return true
        end
        if task.timer then task.timer.dead = true end
        if task.suspended then
            wake(task, task.token, nil, "cancelled")
        end
        -- Waiters learn at once; the task itself may still be unwinding.
        local waiters = task.waiters
        task.waiters = {}
        for _, w in ipairs(waiters) do w(task) end
        return true
    end

    --- Waits for every handle (sharing one timeout). Returns an array with,
    --- per handle, a table {ok, results...} as wait would return them.
    function S.all(handles, timeout)
        local deadline = timeout and now + timeout
        local out = {}
        for i, h in ipairs(handles) do
            local left = deadline and math.max(0, deadline - now)
            out[i] = table.pack(S.wait(h, left))
        end
        return out
    end

    --- True when called inside a task of this scheduler.
    function S.in_task()
        local co, main = coroutine.running()
        return not main and by_co[co] ~= nil
    end

    -- Runs every ready task, then fires the earliest timers, until nothing is
    -- left, the deadline is reached, or stop() returns true.
    local function run_loop(deadline, stop)
        local steps = 0
        while true do
            while ready_head <= ready_tail do
                local item = ready[ready_head]
                ready[ready_head] = nil
                ready_head = ready_head + 1
                local task = item.task
                if not task.finished then
                    task.started = true
                    steps = steps + 1
                    if steps > max_steps then
                        error("scheduler: more than " .. max_steps .. " task steps without finishing")
                    end
                    resume_task(task, table.unpack(item, 1, item.n))
                end
                if stop and stop() then return "stopped" end
            end
            ready, ready_head, ready_tail = {}, 1, 0
            -- Drop cancelled timers.
            while timers[1] and timers[1].dead do heap_pop(timers) end
            local t = timers[1]
            if not t then return "idle" end
            if deadline and t.time > deadline then
                now = math.max(now, deadline)
                return "deadline"
            end
            now = math.max(now, t.time)
            -- Fire every timer due now, in (time, seq) order.
            while timers[1] and timers[1].time <= now do
                local due = heap_pop(timers)
                if not due.dead then due.fn() end
            end
        end
    end

    --- Runs until no task can make progress (nothing ready, no timers).
    --- Returns "idle" (or "stopped" when stop() returned true).
    function S.run_until_idle(stop) return run_loop(nil, stop) end

    --- Runs until virtual time `deadline` (absolute), or idle. Returns
    --- "deadline", "idle" or "stopped". Time ends at the deadline when the
    --- next event lies beyond it.
    function S.run(deadline, stop) return run_loop(deadline, stop) end

    --- Advances virtual time by `seconds`, running whatever is due.
    function S.advance(seconds)
        local target = now + seconds
        local r = run_loop(target)
        if now < target then now = target end
        return r
    end

    --- Number of live timers (sleeps and wait timeouts) still pending.
    function S.pending_timers()
        local n = 0
        for _, t in ipairs(timers) do if not t.dead then n = n + 1 end end
        return n
    end

    return S
end

return M
