-- mcp.fake_runtime and mcp.testing (registry, probes, clock, log).
local root = debug.getinfo(1, "S").source:match("^@(.-)tests/lua/[^/]*$") or "./"
package.path = root .. "lua/?.lua;" .. root .. "lua/?/init.lua;" .. package.path

local fake_runtime = require("mcp.fake_runtime")
local t = require("mcp.testing")

local IMG = "localhost/x:1"

describe("mcp.fake_runtime", function()
    local rt
    before_each(function() rt = fake_runtime.new{ images = { IMG } } end)

    it("runs, lists, inspects, stops, starts and removes containers", function()
        local id = assert(rt.run{ name = "web", image = IMG, ports = { "127.0.0.1:8080:80/tcp", "9000" },
                                  env = { "A=1" }, cmd = { "httpd" }, network = "n", user = "1:1" })
        assert.is_string(id)
        local list = rt.list()
        assert.equal(1, #list)
        assert.equal("running", list[1].state)
        assert.same({ host_ip = "127.0.0.1", host_port = 8080, container_port = 80, protocol = "tcp" },
            list[1].ports[1])
        assert.equal(9000, list[1].ports[2].container_port)
        assert.is_number(list[1].ports[2].host_port)
        assert.is_nil(list[1].env)
        local rec = rt.inspect("web")
        assert.same({ "A=1" }, rec.env)
        assert.same({ "httpd" }, rec.cmd)
        assert.equal("n", rec.network)
        assert.is_true(rt.stop("web", 10))
        assert.equal("exited", rt.inspect("web").state)
        assert.is_true(rt.start("web"))
        assert.equal("running", rt.inspect("web").state)
        assert.is_true(rt.remove("web"))
        assert.is_true(rt.remove("web"), "removing a missing container is fine")
        assert.same({}, rt.list())
    end)

    it("returns the stable reasons of docs/LUA_API.md", function()
        local id, why, detail = rt.run{ name = "a", image = "nope" }
        assert.is_nil(id)
        assert.equal("no such image", why)
        assert.matches("nope", detail)
        rt.run{ name = "a", image = IMG }
        local _, in_use = rt.run{ name = "a", image = IMG }
        assert.equal("name in use", in_use)
        assert.same({ nil, "no such container" }, { rt.inspect("zzz") })
        assert.same({ nil, "no such container" }, { rt.start("zzz") })
        assert.same({ nil, "no such container" }, { rt.stop("zzz") })
        assert.is_true(rt.image_exists(IMG))
        assert.is_false(rt.image_exists("nope"))
    end)

    it("refuses a host port held by another running container", function()
        rt.run{ name = "a", image = IMG, ports = { "127.0.0.1:8080:80/tcp" } }
        local id, why, detail = rt.run{ name = "b", image = IMG, ports = { "127.0.0.1:8080:80/tcp" } }
        assert.is_nil(id)
        assert.equal("failed", why)
        assert.matches("8080 already in use by a", detail)
        assert.equal("created", rt.container("b").state)
    end)

    it("raises on misuse", function()
        assert.has_error(function() rt.run("x") end)
        assert.has_error(function() rt.run{ name = "x" } end)
        assert.has_error(function() rt.run{ name = "x", image = IMG, ports = "80" } end)
        assert.has_error(function() rt.inspect(42) end)
        assert.has_error(function() rt.stop("x", "soon") end)
        assert.has_error(function() rt.image_exists(nil) end)
    end)

    it("injects failures, kills containers and logs every operation", function()
        rt.run{ name = "a", image = IMG }
        rt.fail_next("start", "timeout", "podman hung", 2)
        rt.kill("a", 3)
        assert.equal("exited", rt.inspect("a").state)
        assert.equal(3, rt.inspect("a").exit_code)
        assert.same({ nil, "timeout", "podman hung" }, { rt.start("a") })
        assert.same({ nil, "timeout", "podman hung" }, { rt.start("a") })
        assert.is_true(rt.start("a"))
        local ops = {}
        for _, e in ipairs(rt.mutations()) do ops[#ops + 1] = e.op .. (e.ok and "" or "!") end
        assert.same({ "run", "start!", "start!", "start" }, ops)
        assert.equal(6, #rt.ops())
    end)

    it("takes time through the sleep function it is given", function()
        local slept = 0
        local r = fake_runtime.new{ images = { IMG }, latency = { run = 0.25, default = 0.01 },
            sleep = function(s) slept = slept + s; return true end, now = function() return slept end }
        r.run{ name = "a", image = IMG }
        r.list()
        assert.equal(0.26, slept)
        assert.equal(0.25, r.inspect("a").started_at)
    end)

    it("reports cancellation from sleep as the operation's failure", function()
        local r = fake_runtime.new{ images = { IMG }, latency = 1,
            sleep = function() return nil, "cancelled" end }
        assert.same({ nil, "cancelled" }, { r.run{ name = "a", image = IMG } })
        assert.is_nil(r.container("a"))
    end)

    it("accepts any image when built with any_image", function()
        local r = fake_runtime.new{ any_image = true }
        assert.is_true(r.image_exists("whatever:1"))
        assert.is_string(r.run{ name = "a", image = "whatever:1" })
    end)

    it("parses port specs", function()
        assert.same({ host_ip = "0.0.0.0", host_port = 8080, container_port = 80, protocol = "udp" },
            fake_runtime.parse_port("8080:80/udp"))
        assert.is_nil(fake_runtime.parse_port("a:b:c:d"))
        assert.is_nil(fake_runtime.parse_port("x:80"))
    end)
end)

describe("mcp.fake_runtime events", function()
    local function statuses(evs)
        local out = {}
        for i, e in ipairs(evs) do out[i] = e.status end
        return out
    end

    -- Reads events until `timeout` seconds pass without one; returns them and
    -- how the stream answered last.
    local function drain(s, timeout)
        local evs = {}
        while true do
            local ev, why, detail = s:next(timeout)
            if not ev then return evs, why, detail end
            evs[#evs + 1] = ev
        end
    end

    it("streams podman's events for its own operations, with labels", function()
        local w = t.world{ images = { IMG } }
        local evs, why = w:run(function(agent)
            local rt = agent.runtime
            local s = assert(rt.events())
            local reader = agent.task.spawn(function() return drain(s, 30) end)
            agent.clock.sleep(1)
            assert(rt.run{ name = "web", image = IMG, labels = { ["mcp.spec-hash"] = "h1", n = 2 },
                           restart = "always" })
            agent.clock.sleep(1)
            rt.stop("web", 10)
            agent.clock.sleep(1)
            rt.start("web")
            agent.clock.sleep(1)
            rt.remove("web")
            local _, e, r = agent.task.wait(reader)
            return e, r
        end)
        assert.equal("timeout", why)
        assert.same({ "create", "init", "start", "died", "cleanup", "stop", "init", "start",
                      "died", "cleanup", "remove" }, statuses(evs))
        assert.equal(0, evs[4].exit_code)   -- stop
        assert.equal(137, evs[9].exit_code) -- rm -f of a running container
        assert.is_nil(evs[1].exit_code)
        for _, e in ipairs(evs) do
            assert.equal("web", e.name)
            assert.equal(IMG, e.image)
            assert.matches("^fake", e.id)
            assert.same({ ["mcp.spec-hash"] = "h1", n = "2" }, e.labels)
        end
        assert.equal(1, evs[1].time)
        assert.equal(2, evs[4].time)
        assert.equal(4, evs[11].time)
    end)

    it("wakes the waiting task exactly when the event comes, and times out exactly", function()
        local w = t.world{ images = { IMG } }
        local got = w:run(function(agent)
            local rt = agent.runtime
            rt.run{ name = "a", image = IMG }
            local s = rt.events() -- events before it opened are not in it
            agent.task.spawn(function() agent.clock.sleep(5); rt.kill("a", 137) end)
            local out = {}
            for _ = 1, 3 do
                local ev, why = s:next(60)
                out[#out + 1] = { ev and ev.status or why, agent.clock.now(), ev and ev.exit_code }
            end
            local ev, why = s:next(2.5)
            out[#out + 1] = { ev or why, agent.clock.now() }
            assert.same({ nil, "timeout" }, { s:next(0) })
            return out
        end)
        assert.same({ { "kill", 5 }, { "died", 5, 137 }, { "cleanup", 5 }, { "timeout", 7.5 } }, got)
    end)

    it("crash-loops a container on every start and lists what podman would", function()
        local w = t.world{ images = { IMG } }
        local seen, mid = w:run(function(agent)
            local rt = agent.runtime
            local s = assert(rt.events())
            rt.crash_loop("svc", 3, 2)   -- before the container even exists
            rt.run{ name = "svc", image = IMG }
            local seen = {}
            local ev = s:next(60)
            while ev do
                if ev.status == "died" then
                    seen[#seen + 1] = { agent.clock.now(), ev.exit_code, ev.time }
                    if #seen == 1 then
                        agent.clock.sleep(1)
                        rt.start("svc")
                    elseif #seen == 3 then
                        break
                    else
                        rt.start("svc")
                    end
                end
                ev = s:next(60)
            end
            local l = rt.list()[1]
            local mid = { l.state, l.exit_code, l.finished_at, rt.inspect("svc").oom }
            rt.crash_loop("svc")      -- cleared: the next start stays up
            rt.start("svc")
            local rest, why = drain(s, 100)
            assert.same({ "cleanup", "init", "start" }, statuses(rest))
            assert.equal("timeout", why)
            return seen, mid
        end)
        assert.same({ { 2, 3, 2 }, { 5, 3, 5 }, { 7, 3, 7 } }, seen)
        assert.same({ "exited", 3, 7, false }, mid)
        assert.equal("running", w.runtime.inspect("svc").state)
    end)

    it("settles a due crash lazily when nobody waits", function()
        local w = t.world{ images = { IMG } }
        w.runtime.add_container{ name = "old", image = IMG, state = "running" }
        w.runtime.crash_loop("old", 1, 10)
        w:advance(30)
        local rec = w.runtime.inspect("old")
        assert.equal("exited", rec.state)
        assert.equal(1, rec.exit_code)
        assert.equal(10, rec.finished_at)
    end)

    it("kill with oom, and finished_at / oom / labels in list and inspect", function()
        local w = t.world{ images = { IMG } }
        w:run(function(agent)
            agent.runtime.run{ name = "m", image = IMG, labels = { a = "b" } }
            agent.clock.sleep(3)
            agent.runtime.kill("m", 137, { oom = true })
        end)
        local rec = w.runtime.inspect("m")
        assert.equal(137, rec.exit_code)
        assert.is_true(rec.oom)
        assert.equal(3, rec.finished_at)
        assert.equal("no", rec.restart) -- the agent supervises, never podman
        assert.same({ a = "b" }, rec.labels)
        local l = w.runtime.list()[1]
        assert.is_false(l.oom) -- podman ps does not say
        assert.same({ a = "b" }, l.labels)
        assert.equal("", w.runtime.inspect("m") and (function()
            w.runtime.start("m"); return w.runtime.inspect("m").finished_at end)())
        assert.has_error(function() w.runtime.run{ name = "x", image = IMG, labels = { 1, 2 } } end)
        assert.has_error(function() w.runtime.run{ name = "x", image = IMG, labels = { ["a=b"] = "c" } } end)
        assert.has_error(function() w.runtime.run{ name = "x", image = IMG, labels = "a=b" } end)
    end)

    it("vanishes containers without a word", function()
        local w = t.world{ images = { IMG } }
        local after, why = w:run(function(agent)
            local rt = agent.runtime
            rt.run{ name = "a", image = IMG }
            rt.run{ name = "b", image = IMG }
            local s = rt.events()
            rt.vanish("a")
            local n1 = #rt.list()
            rt.vanish()
            local _, r = s:next(10)
            return { n1, #rt.list() }, r
        end)
        assert.same({ 1, 0 }, after)
        assert.equal("timeout", why)
    end)

    it("ends every stream like a dead podman events child, queued events first", function()
        local w = t.world{ images = { IMG } }
        local out = w:run(function(agent)
            local rt = agent.runtime
            local s = rt.events()
            local waiting = rt.events()
            local h = agent.task.spawn(function() return waiting:next() end)
            agent.clock.sleep(1)
            rt.run{ name = "a", image = IMG }
            agent.task.wait(h)
            local idle = rt.events()
            local h1 = agent.task.spawn(function() return idle:next() end) -- waits for ever…
            agent.clock.sleep(1)
            local h2 = agent.task.spawn(function() return idle:next() end)
            agent.clock.sleep(0)
            local raised = agent.task.wait(h2) -- …so a second waiter is misuse
            rt.end_events("podman events exited with status 125: boom")
            local evs, why, detail = drain(s, 5)
            local _, _, r1, d1 = agent.task.wait(h1)
            local again = assert(rt.events())
            rt.stop("a")
            return { #evs, why, detail, raised, r1, d1, again:next(1).status, rt.streams() }
        end)
        local boom = "podman events exited with status 125: boom"
        assert.same({ 3, "closed", boom, false, "closed", boom, "died", 1 }, out)
    end)

    it("answers cancelled to a task cancelled in next(), and closed after close()", function()
        local w = t.world{ images = { IMG } }
        local out = w:run(function(agent)
            local rt = agent.runtime
            local s = rt.events()
            local h = agent.task.spawn(function() return s:next(100) end)
            agent.clock.sleep(2)
            agent.task.cancel(h)
            local r1 = { agent.task.wait(h) }
            local h2 = agent.task.spawn(function() return s:next(100) end)
            agent.clock.sleep(1)
            s:close()
            local r2 = { agent.task.wait(h2) }
            do
                local s2 <close> = rt.events()
                assert(rt.streams() == 1 and s2)
            end
            return { r1, r2, { s:next(1) }, rt.streams(), agent.clock.now() }
        end)
        assert.same({ { nil, "cancelled" }, { true, nil, "closed", "the stream was closed" },
                      { nil, "closed", "the stream was closed" }, 0, 3 }, out)
        assert.equal(0, w.sched.pending_timers()) -- no sleeper left behind
    end)

    it("drops what piles up unread and says overflow once", function()
        local w = t.world{ images = { IMG }, events_max = 4 }
        local out = w:run(function(agent)
            local rt = agent.runtime
            local s = rt.events()
            rt.run{ name = "a", image = IMG } -- create init start
            rt.stop("a")                     -- died cleanup stop: 6 > 4
            local first = { s:next(1) }
            local evs = drain(s, 1)
            return { first[2], statuses(evs) }
        end)
        assert.same({ "overflow", { "cleanup", "stop" } }, out)
    end)

    it("polls on a clock without a task API (the real-clock fake)", function()
        local sched = require("mcp.sched").new()
        local rt = fake_runtime.new{ images = { IMG }, now = sched.now, sleep = sched.sleep, poll = 0.1 }
        rt.run{ name = "a", image = IMG }
        local s = rt.events()
        local got
        sched.spawn(function() sched.sleep(1.03); rt.kill("a", 9) end)
        local reader = sched.spawn(function()
            local ev = s:next(10)
            got = { ev.status, sched.now() }
            return s:next(0.25)
        end)
        sched.run_until_idle()
        assert.equal("kill", got[1])
        assert.is_true(got[2] >= 1.03 and got[2] <= 1.14, "seen at " .. got[2])
        assert.same({ true, { name = "a", id = rt.container("a").id, status = "died", exit_code = 9,
                               time = 1.03, image = IMG, labels = {} } }, { reader.wait() })
        assert.has_error(function() s:next(-1) end)
        assert.has_error(function() s.next({}, 1) end)
    end)

    it("passes events through a dry run and can fail like podman", function()
        local rt = fake_runtime.new{ images = { IMG } }
        local dry = require("mcp.dryrun").wrap(rt, { print = function() end })
        rt.fail_next("events", "podman not found", "podman: executable not found in PATH")
        assert.same({ nil, "podman not found", "podman: executable not found in PATH" }, { dry.events() })
        local s = assert(dry.events())
        rt.run{ name = "a", image = IMG }
        assert.equal("create", s:next(0).status)
    end)
end)

describe("mcp.testing", function()
    it("fills service defaults", function()
        local s = t.service{ name = "mc", image = IMG }
        assert.is_true(s.active)
        assert.equal(1, #s.components)
        assert.same({ name = "mc", container = "mc", image = IMG, desired_state = "running",
                      ports = {}, volumes = {}, cmd = {}, env = {}, routes = {} }, s.components[1])
        local m = t.service{ name = "m", active = false, components = { { name = "api", image = IMG } } }
        assert.is_false(m.active)
        assert.equal("m-api", m.components[1].container)
        assert.has_error(function() t.service{ image = IMG } end)
    end)

    it("offers a registry with set_desired and newest-first events", function()
        local w = t.world{ services = { { name = "b", image = IMG },
            { name = "a", components = { { name = "x", image = IMG }, { name = "y", image = IMG } } } } }
        local reg = w.agent.registry
        assert.same({ "a", "b" }, { reg.services()[1].name, reg.services()[2].name })
        assert.is_nil(reg.service("zzz"))
        assert.equal(2, reg.set_desired("a", nil, "stopped"))
        assert.equal(0, reg.set_desired("a", "x", "stopped"))
        assert.equal(1, reg.set_desired("a", "x", "running"))
        assert.equal("stopped", reg.service("a").components[2].desired_state)
        assert.has_error(function() reg.set_desired("a", nil, "paused") end)
        -- Copies: a policy changing a table does not change the registry.
        reg.service("b").active = false
        assert.is_true(reg.service("b").active)
        w:run(function(agent)
            agent.registry.event("a", "x", "started", "one")
            agent.clock.sleep(1)
            agent.registry.event("b", nil, "started", "two")
            agent.registry.event("a", nil, "stopped", "three")
        end)
        local ev = reg.events(nil, 2)
        assert.same({ "three", "two" }, { ev[1].message, ev[2].message })
        assert.equal(1, ev[1].time)
        assert.equal(2, #reg.events("a"))
    end)

    it("answers probes per container rule, taking virtual time and respecting timeouts", function()
        local w = t.world{
            services = {
                { name = "slow", image = IMG, ports = { "127.0.0.1:10001:80/tcp" } },
                { name = "never", image = IMG, ports = { "127.0.0.1:10002:80/tcp" } },
                { name = "flap", image = IMG, ports = { "127.0.0.1:10003:80/tcp" } },
                { name = "hang", image = IMG, ports = { "127.0.0.1:10004:80/tcp" } },
            },
            images = { IMG },
            health = { slow = { after = 5 }, never = "never", flap = { flap = 10 },
                       hang = { hang = true } },
        }
        local got = {}
        w:run(function(agent)
            for _, s in ipairs(agent.registry.services()) do
                local c = s.components[1]
                assert(agent.runtime.run(require("mcp.spec").container(s, c)))
            end
            local p = agent.probe
            got.slow_early = { p.tcp("127.0.0.1", 10001, 1) }
            got.never = { p.http("127.0.0.1", 10002, "/", 1) }
            local t0 = agent.clock.now()
            got.hang = { p.grpc("127.0.0.1", 10004, "", 2) }
            got.hang_took = agent.clock.now() - t0
            got.nobody = { p.tcp("127.0.0.1", 19999, 1) }
            agent.clock.sleep(5)
            got.slow_late = { p.tcp("127.0.0.1", 10001, 1) }
            got.flap_up = p.tcp("127.0.0.1", 10003, 1)
            agent.clock.sleep(10)
            got.flap_down = p.tcp("127.0.0.1", 10003, 1)
        end)
        assert.is_nil(got.slow_early[1])
        assert.equal("refused", got.slow_early[2])
        assert.equal("refused", got.never[2])
        assert.equal("timeout", got.hang[2])
        assert.equal(2, got.hang_took)
        assert.equal("refused", got.nobody[2])
        assert.is_true(got.slow_late[1])
        assert.is_true(got.slow_late[2] > 0)
        assert.is_true(got.flap_up)
        assert.is_nil(got.flap_down)
        assert.equal(7, #w.probe_log)
        assert.equal("slow", w.probe_log[1].container)
    end)

    it("records log lines and raises a policy's error with its traceback", function()
        local w = t.world{}
        w:run(function(agent) agent.log.info("hello", { n = 3 }) end)
        assert.equal("hello", w.logs[1].msg)
        assert.equal("3", w.logs[1].fields.n)
        assert.same({ "hello" }, w:log_lines("info"))
        local ok, err = pcall(function() w:run(function() error("policy bug") end) end)
        assert.is_false(ok)
        assert.matches("policy bug", err)
        assert.matches("traceback", err)
    end)

    it("detects a deadlock and a task that never finishes", function()
        local w = t.world{}
        assert.has_error(function()
            w:run(function(agent)
                -- Two tasks waiting for each other, with no timer left.
                local a, b
                a = agent.task.spawn(function() agent.clock.sleep(0); agent.task.wait(b) end)
                b = agent.task.spawn(function() agent.clock.sleep(0); agent.task.wait(a) end)
                agent.task.wait(a)
            end)
        end)
        assert.has_error(function()
            w:run(function(agent) while true do agent.clock.sleep(60) end end, { max_time = 3600 })
        end)
    end)
end)
