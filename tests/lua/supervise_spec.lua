-- policies/supervise.lua and lua/mcp/supervisor.lua on mcp.testing (SPEC §10),
-- on the virtual clock: deaths come from the fake runtime's event stream.
local t = require("mcp.testing")
local supervisor = require("mcp.supervisor")
local builtin = require("policy.supervise")
local recover = require("policy.recover")

local IMG = "localhost/app:1"

local function svc(name, extra)
    local s = { name = name, image = IMG }
    for k, v in pairs(extra or {}) do s[k] = v end
    return s
end

local function world(services, opts)
    opts = opts or {}
    return t.world{ services = services, images = { IMG }, config = { monitor_interval = opts.interval or 10 } }
end

-- Runs body(agent, sup, w) with every service recovered and a supervisor
-- started (policy: the given table, default the built-in one); stops it after.
local function supervised(w, policy, body, sopts)
    sopts = sopts or {}
    return w:run(function(agent)
        if not sopts.no_recover then recover.run(agent, {}) end
        local sup = supervisor.new(agent, {
            policy = function() return policy or builtin end,
            builtin = function() return builtin end,
            interval = sopts.interval or 10,
            recover = function(a, only) return recover.run(a, { only = only }) end,
        })
        sup.start()
        agent.clock.sleep(0.001) -- let it read the stream and list once
        local r = table.pack(body(agent, sup, w))
        sup.stop()
        return table.unpack(r, 1, r.n)
    end, { max_time = sopts.max_time })
end

local function kinds(w, kind)
    local out = {}
    for _, e in ipairs(w:events()) do
        if kind == nil or e.kind == kind then out[#out + 1] = e end
    end
    return out
end

-- The messages of the node's `recovered` events: one per recover pass.
local function passes(w)
    local out = {}
    for _, e in ipairs(kinds(w, "recovered")) do
        if e.service == "" then out[#out + 1] = e.message end
    end
    return out
end

-- Times (virtual s) of the supervisor's restarts.
local function restart_times(w)
    local out = {}
    for _, e in ipairs(kinds(w, "restarted")) do out[#out + 1] = e.time end
    return out
end

describe("policies/supervise.lua", function()
    it("restarts at once first, then after 1 s doubling to 60 s with ±25 % jitter", function()
        assert.equal(0, builtin.on_exit(nil, {}, { restarts = 0 }))
        for n = 1, 12 do
            local want = math.min(60, 2 ^ (n - 1))
            for _ = 1, 50 do
                local d = builtin.on_exit(nil, {}, { restarts = n })
                assert.is_true(d >= want * 0.75 and d <= want * 1.25, ("restart %d: %g"):format(n, d))
            end
        end
    end)

    it("never gives up", function()
        for n = 0, 1000, 37 do assert.is_number(builtin.on_exit(nil, {}, { restarts = n })) end
    end)
end)

describe("mcp.supervisor", function()
    it("restarts a killed container at once, with died and restarted events carrying the exit code", function()
        local w = world({ svc("web") })
        supervised(w, nil, function(agent)
            w.runtime.kill("web", 137)
            agent.clock.sleep(1)
        end)
        local died, restarted = kinds(w, "died"), kinds(w, "restarted")
        assert.equal(1, #died)
        assert.equal(137, died[1].exit_code)
        assert.equal(1, #restarted)
        assert.equal(137, restarted[1].exit_code)
        assert.equal("running", w.runtime.inspect("web").state)
        -- the same container was started again (its spec-hash matches)
        assert.is_true(w:logged("info", "supervisor: started web"))
    end)

    it("follows the backoff for a crash-looping container", function()
        local w = world({ svc("loop") })
        local seen = {}
        local policy = setmetatable({ on_exit = function(agent, c, info)
            local d = builtin.on_exit(agent, c, info)
            seen[#seen + 1] = { restarts = info.restarts, delay = d, reason = info.reason, code = info.exit_code }
            return d
        end }, { __index = builtin })
        supervised(w, policy, function(agent)
            w.runtime.crash_loop("loop", 1, 0.2)
            agent.clock.sleep(40)
        end)
        assert.is_true(#seen >= 5, "decisions: " .. #seen)
        local times = restart_times(w)
        for i, s in ipairs(seen) do
            assert.equal(i - 1, s.restarts)
            assert.equal(1, s.code)
            assert.equal("died", s.reason)
        end
        -- each restart comes its delay after the death (0.2 s after the start before)
        for i = 2, math.min(#times, #seen) do
            local gap = times[i] - times[i - 1]
            local want = 0.2 + seen[i].delay
            assert.is_true(math.abs(gap - want) < 0.01,
                ("restart %d: %g s after the last, want %g"):format(i, gap, want))
        end
        assert.is_true(#kinds(w, "backoff") >= 4)
    end)

    it("a component up for 10 minutes is stable again: its count resets", function()
        local w = world({ svc("web") })
        local counts = {}
        local policy = setmetatable({ on_exit = function(agent, c, info)
            counts[#counts + 1] = info.restarts
            return builtin.on_exit(agent, c, info)
        end }, { __index = builtin })
        supervised(w, policy, function(agent)
            w.runtime.kill("web", 137)
            agent.clock.sleep(0.5)
            w.runtime.kill("web", 137)
            agent.clock.sleep(5)
            w.runtime.kill("web", 137)
            agent.clock.sleep(700) -- long enough up
            w.runtime.kill("web", 137)
            agent.clock.sleep(1)
        end, { max_time = 2000 })
        assert.same({ 0, 1, 2, 0 }, counts)
    end)

    it("applies restart = no, on-failure and always by exit code", function()
        local w = world({ svc("no", { restart = "no" }), svc("onf", { restart = "on-failure" }),
                          svc("onf0", { restart = "on-failure" }), svc("always", { restart = "always" }),
                          svc("default") })
        supervised(w, nil, function(agent)
            w.runtime.kill("no", 1)
            w.runtime.kill("onf", 1)
            w.runtime.kill("onf0", 0)
            w.runtime.kill("always", 0)
            w.runtime.kill("default", 0)
            agent.clock.sleep(2)
        end)
        local state = function(n) return w.runtime.inspect(n).state end
        assert.equal("exited", state("no"))
        assert.equal("running", state("onf"))
        assert.equal("exited", state("onf0"))
        assert.equal("running", state("always"))
        assert.equal("running", state("default"))
        assert.equal("exited", w.registry.supervision("no", "no").state)
        assert.equal(5, #kinds(w, "died"))
    end)

    it("a policy that gives up after 3 restarts in 5 minutes leaves the component down", function()
        local w = world({ svc("flaky") })
        local policy = { STABLE_AFTER = 300, on_exit = function(_, _, info)
            if info.restarts >= 3 then return false, "3 restarts in 5 minutes" end
            return 1
        end }
        supervised(w, policy, function(agent)
            w.runtime.crash_loop("flaky", 2, 0.5)
            agent.clock.sleep(30)
        end)
        assert.equal(3, #kinds(w, "restarted"))
        local gave = kinds(w, "gave-up")
        assert.equal(1, #gave)
        assert.truthy(gave[1].message:find("3 restarts in 5 minutes", 1, true))
        assert.equal("given up", w.registry.supervision("flaky", "flaky").state)
        assert.equal("exited", w.runtime.inspect("flaky").state)
    end)

    it("an on_exit that raises is logged with its traceback and the built-in delay is used", function()
        local w = world({ svc("web") })
        local policy = { on_exit = function() error("policy bug") end }
        supervised(w, policy, function(agent)
            w.runtime.kill("web", 137)
            agent.clock.sleep(1)
        end)
        assert.is_true(w:logged("error", "supervise policy failed"))
        local found = false
        for _, l in ipairs(w.logs) do
            if l.fields and tostring(l.fields.error):find("policy bug", 1, true)
                and tostring(l.fields.error):find("traceback", 1, true) then found = true end
        end
        assert.is_true(found, "the error and its traceback are logged")
        assert.equal(1, #kinds(w, "restarted"))
    end)

    for _, bad in ipairs({ { "negative", -5 }, { "NaN", 0 / 0 }, { "a string", "soon" }, { "huge", 1e300 },
                           { "infinite", math.huge } }) do
        it("an on_exit returning " .. bad[1] .. " is a logged policy error, not a restart storm", function()
            local w = world({ svc("web") })
            local policy = { on_exit = function() return bad[2] end }
            supervised(w, policy, function(agent)
                w.runtime.crash_loop("web", 1, 0.1)
                agent.clock.sleep(10)
            end)
            assert.is_true(w:logged("error", "no usable delay"))
            -- the built-in backoff: at once, then 1 s, 2 s, 4 s … — a handful in 10 s
            local n = #kinds(w, "restarted")
            assert.is_true(n >= 2 and n <= 6, "restarts in 10 s: " .. n)
        end)
    end

    it("restart state survives a daemon restart", function()
        local w = world({ svc("web") })
        local policy = { on_exit = function(_, _, info) return info.restarts == 0 and 0 or 30 end }
        w:run(function(agent)
            recover.run(agent, {})
            local first = supervisor.new(agent, { policy = function() return policy end })
            first.start()
            agent.clock.sleep(0.001)
            w.runtime.kill("web", 1)
            agent.clock.sleep(1)
            w.runtime.kill("web", 1) -- now in a 30 s backoff
            agent.clock.sleep(1)
            first.stop()
            local row = agent.registry.supervision("web", "web")
            assert.equal("backoff", row.state)
            assert.equal(1, row.restarts)
            -- a new daemon: the pending restart resumes, the count goes on
            local second = supervisor.new(agent, { policy = function() return policy end })
            second.start()
            agent.clock.sleep(20)
            assert.equal("exited", w.runtime.inspect("web").state)
            agent.clock.sleep(15)
            assert.equal("running", w.runtime.inspect("web").state)
            assert.equal(2, agent.registry.supervision("web", "web").restarts)
            second.stop()
        end)
    end)

    it("stopped components and containers the agent replaces are not restarted", function()
        local w = world({ svc("web"), svc("db") })
        supervised(w, nil, function(agent)
            local ops = require("mcp.host.ops")
            ops.service_action(agent, "stop", "web")
            ops.service_action(agent, "restart", "db")
            agent.clock.sleep(5)
        end)
        assert.equal(0, #kinds(w, "died"))
        assert.equal("exited", w.runtime.inspect("web").state)
        assert.equal("running", w.runtime.inspect("db").state)
    end)

    it("a container just created by a deploy that dies is restarted at once, with no look first", function()
        local lifecycle = require("mcp.lifecycle")
        local w = world({})
        local ops = {}
        supervised(w, nil, function(agent)
            w.registry.put(svc("web")) -- deployed now: stored, then brought up
            local s = agent.registry.service("web")
            local r = lifecycle.up(agent, s, s.components[1], { recreate = true, why = "deploy" })
            assert.equal("created", r.outcome)
            w.runtime.clear_ops()
            agent.clock.sleep(0.2)
            w.runtime.kill("web", 1)
            agent.clock.sleep(0.5)
            for _, o in ipairs(w.runtime.ops()) do ops[#ops + 1] = o.op end
        end)
        -- nothing was removed or stopped: the death is a crash, not the agent's doing
        assert.same({ "start" }, ops)
    end)

    it("the death of a container replaced since, told late, is not a death of the one there now", function()
        local lifecycle = require("mcp.lifecycle")
        local w = world({ svc("web") })
        local old
        supervised(w, nil, function(agent)
            old = w.runtime.inspect("web").id
            local s = agent.registry.service("web")
            assert.equal("created", lifecycle.up(agent, s, s.components[1], { recreate = true }).outcome)
            agent.clock.sleep(supervisor.RECENT + 1) -- past the "it just removed it" window
            w.runtime.clear_ops()
            w.runtime.tell{ name = "web", id = old, status = "died", exit_code = 137 }
            agent.clock.sleep(1)
        end)
        assert.equal(0, #kinds(w, "died"))
        assert.same({}, w.runtime.ops()) -- (before the inspects below, which it logs too)
        assert.are_not.equal(old, w.runtime.inspect("web").id)
        assert.equal("running", w.runtime.inspect("web").state)
    end)

    it("most containers vanishing at once is one recover pass and one event", function()
        local w = world({ svc("a"), svc("b"), svc("c"), svc("d") })
        supervised(w, nil, function(_, sup)
            w.runtime.vanish()
            sup.reconcile()
        end)
        local rec = passes(w)
        assert.equal(1, #rec)
        assert.truthy(rec[1]:find("4 containers went down at once", 1, true))
        assert.equal(0, #kinds(w, "died"))
        for _, n in ipairs({ "a", "b", "c", "d" }) do assert.equal("running", w.runtime.inspect(n).state) end
    end)

    it("most stable containers dying together (the event stream) is one recover pass", function()
        local w = world({ svc("a"), svc("b"), svc("c"), svc("d") })
        supervised(w, nil, function(agent)
            for _, n in ipairs({ "a", "b", "c" }) do
                w.runtime.kill(n, 137)
                agent.clock.sleep(0.05)
            end
            agent.clock.sleep(3)
        end)
        assert.equal(1, #passes(w))
        assert.equal(3, #kinds(w, "died"))
        -- only the first death, before it was a burst, may have been restarted on its own
        assert.is_true(#kinds(w, "restarted") <= 1)
        for _, n in ipairs({ "a", "b", "c", "d" }) do assert.equal("running", w.runtime.inspect(n).state) end
    end)

    it("a loss seen just after the pass joins the burst: another pass, not a restart of its own", function()
        local w = world({ svc("a"), svc("b"), svc("c"), svc("d") })
        supervised(w, nil, function(agent)
            for _, n in ipairs({ "a", "b", "c" }) do
                w.runtime.kill(n, 137)
                agent.clock.sleep(0.05)
            end
            agent.clock.sleep(2) -- the pass is over
            w.runtime.kill("d", 137) -- a slow one
            agent.clock.sleep(3)
        end)
        local node = passes(w)
        assert.equal(2, #node)
        assert.truthy(node[1]:find("went down at once", 1, true), node[1])
        assert.truthy(node[2]:find("1 more went down with them (d)", 1, true), node[2])
        -- only the first death, before it was a burst, may have been restarted on its own
        assert.is_true(#kinds(w, "restarted") <= 1)
        for _, n in ipairs({ "a", "b", "c", "d" }) do assert.equal("running", w.runtime.inspect(n).state) end
    end)

    it("a list finding many missing while a pass runs leaves them to that pass: one at a time", function()
        local w = world({ svc("a"), svc("b"), svc("c"), svc("d") })
        local during
        supervised(w, nil, function(agent, sup)
            local before = #kinds(w, "recovered") -- the first recover's
            w.runtime.kill("a", 137)
            w.runtime.kill("b", 137)
            agent.clock.sleep(0.1) -- the stream's burst: a pass waits for the rest
            w.runtime.vanish("c")
            w.runtime.vanish("d")
            sup.reconcile()
            during = #kinds(w, "recovered") - before
            agent.clock.sleep(5)
        end)
        local node = passes(w)
        assert.equal(0, during) -- the list did not run a pass of its own beside it
        assert.equal(1, #node, table.concat(node, "\n"))
        assert.truthy(node[1]:find("(a, b, c, d)", 1, true), node[1])
        for _, n in ipairs({ "a", "b", "c", "d" }) do assert.equal("running", w.runtime.inspect(n).state) end
    end)

    it("a death long after a pass is a crash again, with its own restart", function()
        local w = world({ svc("a"), svc("b"), svc("c"), svc("d") })
        supervised(w, nil, function(agent)
            for _, n in ipairs({ "a", "b", "c" }) do w.runtime.kill(n, 137) end
            agent.clock.sleep(supervisor.BURST_WINDOW + 10)
            w.runtime.kill("d", 1)
            agent.clock.sleep(1)
        end)
        local node = #passes(w)
        assert.equal(1, node)
        local restarted = kinds(w, "restarted")
        assert.equal("d", restarted[#restarted].component)
    end)

    it("crash-looping components dying together keep their own backoff", function()
        local w = world({ svc("a"), svc("b"), svc("c") })
        supervised(w, nil, function(agent)
            w.runtime.crash_loop("a", 1, 0.3)
            w.runtime.crash_loop("b", 1, 0.3)
            agent.clock.sleep(20)
        end)
        local node = #passes(w)
        -- their first deaths may be taken for a burst once; after that the policy decides
        assert.is_true(node <= 1, "recover passes: " .. node)
        assert.is_true(#kinds(w, "backoff") >= 6)
    end)

    it("a stream that stops producing is restarted once a list finds a death it missed", function()
        local w = world({ svc("web") }, { interval = 2 })
        supervised(w, nil, function(agent)
            w.runtime.mute_events(true)
            w.runtime.kill("web", 137)
            agent.clock.sleep(2.5) -- the list at 2 s restarts it and blames the stream
            w.runtime.mute_events(false)
            agent.clock.sleep(2)
        end, { interval = 2 })
        assert.is_true(w:logged("warn", "stopped producing"))
        assert.equal("running", w.runtime.inspect("web").state)
    end)

    it("a death while the event stream is down is caught by the next list", function()
        local w = world({ svc("web") })
        supervised(w, nil, function(agent)
            w.runtime.end_events("killed")
            w.runtime.vanish("web")
            agent.clock.sleep(12)
        end)
        assert.is_true(w:logged("warn", "event stream ended"))
        assert.equal("running", w.runtime.inspect("web").state)
        assert.equal(1, #kinds(w, "died"))
    end)
end)
