-- mcp.fake_runtime and mcp.testing (registry, probes, clock, log).
local root = debug.getinfo(1, "S").source:match("^@(.-)tests/lua/[^/]*$") or "./"
package.path = root .. "lua/?.lua;" .. root .. "lua/?/init.lua;" .. package.path

local fake_runtime = require "mcp.fake_runtime"
local t = require "mcp.testing"

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
