-- mcp.sched: virtual clock, ordering, wait/timeout, cancel, errors.
-- Find the source tree from this file's location, so the spec runs with or without busted --lpath.
local root = debug.getinfo(1, "S").source:match("^@(.-)tests/lua/[^/]*$") or "./"
package.path = root .. "lua/?.lua;" .. root .. "lua/?/init.lua;" .. package.path
local sched_mod = require("mcp.sched")

describe("mcp.sched", function()
    local s
    before_each(function() s = sched_mod.new() end)

    it("wakes sleepers in time order and advances the virtual clock", function()
        local order = {}
        for _, d in ipairs({ 3, 1, 2 }) do
            s.spawn(function()
                s.sleep(d)
                order[#order + 1] = { d, s.now() }
            end)
        end
        assert.equal("idle", s.run_until_idle())
        assert.same({ { 1, 1 }, { 2, 2 }, { 3, 3 } }, order)
        assert.equal(3, s.now())
    end)

    it("runs tasks woken at the same time in FIFO order", function()
        local order = {}
        for i = 1, 5 do
            s.spawn(function()
                s.sleep(1)
                order[#order + 1] = i
            end)
        end
        s.run_until_idle()
        assert.same({ 1, 2, 3, 4, 5 }, order)
    end)

    it("lets the spawner keep running until it waits", function()
        local trace = {}
        s.spawn(function()
            local h = s.spawn(function() trace[#trace + 1] = "child" end)
            trace[#trace + 1] = "parent-before-wait"
            h.wait()
            trace[#trace + 1] = "parent-after-wait"
        end)
        s.run_until_idle()
        assert.same({ "parent-before-wait", "child", "parent-after-wait" }, trace)
    end)

    it("returns a task's results from wait", function()
        local got
        s.spawn(function()
            local h = s.spawn(function(a, b) s.sleep(2); return a + b, "x" end, 1, 2)
            got = table.pack(h.wait())
        end)
        s.run_until_idle()
        assert.same({ true, 3, "x", n = 3 }, got)
        assert.equal(2, s.now())
    end)

    it("times out a wait without stopping the task", function()
        local got, later, h
        s.spawn(function()
            h = s.spawn(function() s.sleep(10); return "late" end)
            got = table.pack(h.wait(3))
            assert.equal(3, s.now())
            later = table.pack(s.wait(h))
        end)
        s.run_until_idle()
        assert.same({ nil, "timeout", n = 2 }, got)
        assert.same({ true, "late", n = 2 }, later)
        assert.equal(10, s.now())
    end)

    it("cancels a sleeping task: its sleep returns nil, 'cancelled' and waiters learn at once", function()
        local slept, waited, finished_at
        s.spawn(function()
            local h = s.spawn(function()
                slept = table.pack(s.sleep(100))
                finished_at = s.now()
            end)
            s.sleep(5)
            assert.is_true(s.cancel(h))
            waited = table.pack(h.wait())
            assert.is_false(s.cancel(h))
        end)
        s.run_until_idle()
        assert.same({ nil, "cancelled", n = 2 }, slept)
        assert.same({ nil, "cancelled", n = 2 }, waited)
        assert.equal(5, finished_at)
        assert.equal(5, s.now(), "the cancelled timer must not keep the clock running")
    end)

    it("cancels a task that never ran", function()
        local ran = false
        local h = s.spawn(function() ran = true end)
        s.cancel(h)
        s.run_until_idle()
        assert.is_false(ran)
        assert.same({ nil, "cancelled", n = 2 }, table.pack(h.wait()))
    end)

    it("unwinds a cancelled task that ignores 'cancelled' and keeps sleeping", function()
        local h = s.spawn(function()
            while true do s.sleep(1) end
        end)
        s.run(3)
        s.cancel(h)
        assert.equal("idle", s.run_until_idle())
        assert.equal("cancelled", h.status())
    end)

    it("reports a raising task as false, error with traceback", function()
        local got
        s.spawn(function()
            local h = s.spawn(function()
                s.sleep(1)
                error("boom in task")
            end)
            got = table.pack(h.wait())
        end)
        s.run_until_idle()
        assert.is_false(got[1])
        assert.matches("boom in task", got[2])
        assert.matches("stack traceback", got[2])
        assert.matches("sched_spec.lua", got[2])
    end)

    it("treats a raw coroutine.yield in a task as an error, not a hang", function()
        local h = s.spawn(function() coroutine.yield("hi") end)
        s.run_until_idle()
        local ok, err = h.wait()
        assert.is_false(ok)
        assert.matches("yielded outside the agent API", err)
    end)

    it("refuses sleep and wait outside a task, and bad arguments", function()
        assert.has_error(function() s.sleep(1) end)
        assert.has_error(function() s.spawn("not a function") end)
        assert.has_error(function() s.wait({}, 1) end)
        s.spawn(function()
            assert.has_error(function() s.sleep("1") end)
        end)
        s.run_until_idle()
    end)

    it("run(deadline) stops at the deadline and resumes later", function()
        local woke = false
        s.spawn(function() s.sleep(50); woke = true end)
        assert.equal("deadline", s.run(20))
        assert.equal(20, s.now())
        assert.is_false(woke)
        s.advance(30)
        assert.is_true(woke)
        assert.equal(50, s.now())
    end)

    it("all() waits for every handle with one shared timeout", function()
        local res
        s.spawn(function()
            local hs = {
                s.spawn(function() s.sleep(1); return "a" end),
                s.spawn(function() s.sleep(2); error("b failed") end),
                s.spawn(function() s.sleep(9); return "c" end),
            }
            res = s.all(hs, 5)
        end)
        s.run_until_idle()
        assert.same({ true, "a", n = 2 }, res[1])
        assert.is_false(res[2][1])
        assert.same({ nil, "timeout", n = 2 }, res[3])
    end)

    it("simulates a long virtual time quickly", function()
        local n = 0
        s.spawn(function()
            for _ = 1, 10000 do s.sleep(3600); n = n + 1 end
        end)
        s.run_until_idle()
        assert.equal(10000, n)
        assert.equal(36000000, s.now())
    end)
end)
