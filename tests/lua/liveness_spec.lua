-- Liveness, readiness → routes, and drift under the supervisor (SPEC §10),
-- on mcp.testing's virtual clock and fake probes.
local t = require("mcp.testing")
local supervisor = require("mcp.supervisor")
local builtin = require("policy.supervise")
local recover = require("policy.recover")
local spec = require("mcp.spec")

local IMG = "localhost/app:1"

local function web(extra)
    local s = { name = "web", image = IMG, ports = { "127.0.0.1:18080:8080" },
                health = { check = "tcp", port = 8080, interval = 1, timeout = 0.5, failure_threshold = 3 },
                routes = { { name = "http", port = 8080, host_port = 18081, hostname = "web.example" } } }
    for k, v in pairs(extra or {}) do s[k] = v end
    return s
end

local function supervised(w, body, sopts)
    sopts = sopts or {}
    return w:run(function(agent)
        -- (a recover pass would replace an outdated container itself)
        if not sopts.no_recover then recover.run(agent, {}) end
        local sup = supervisor.new(agent, {
            policy = function() return sopts.policy or builtin end,
            builtin = function() return builtin end,
            interval = sopts.interval or 5, drift = sopts.drift,
            recover = function(a, only) return recover.run(a, { only = only }) end,
        })
        sup.start()
        agent.clock.sleep(0.001)
        local r = table.pack(body(agent, sup))
        sup.stop()
        return table.unpack(r, 1, r.n)
    end, { max_time = 10000 })
end

local function kinds(w, wanted)
    local out = {}
    for _, e in ipairs(w:events()) do
        if wanted == nil or wanted[e.kind] then out[#out + 1] = e.kind end
    end
    return out
end

local function count(w, kind)
    local n = 0
    for _, e in ipairs(w:events()) do if e.kind == kind then n = n + 1 end end
    return n
end

describe("liveness", function()
    it("failure_threshold failures in a row make a component unhealthy; a pass resets the count", function()
        local w = t.world{ services = { web() }, images = { IMG } }
        supervised(w, function(agent)
            agent.clock.sleep(5)
            w.health.web = "never"
            agent.clock.sleep(1.7) -- two failed probes at most (they are >= 0.9 s apart)
            w.health.web = nil
            agent.clock.sleep(5)
            assert.equal(0, count(w, "unhealthy"))
            w.health.web = "never"
            agent.clock.sleep(3.6)
            assert.equal(1, count(w, "unhealthy"))
        end)
    end)

    it("probes every interval with ±10 % jitter", function()
        local w = t.world{ services = { web() }, images = { IMG } }
        supervised(w, function(agent) agent.clock.sleep(60) end)
        local times = {}
        for _, p in ipairs(w.probe_log) do times[#times + 1] = p.time end
        assert.is_true(#times >= 50, "probes in 60 s: " .. #times)
        for i = 2, #times do
            local gap = times[i] - times[i - 1]
            -- a probe takes 0.01 s; the sleep between is 0.9-1.1 s
            assert.is_true(gap >= 0.9 and gap <= 1.12, ("gap %d: %g"):format(i, gap))
        end
    end)

    it("an unhealthy component is restarted through the backoff, its routes withdrawn and restored in order", function()
        local w = t.world{ services = { web() }, images = { IMG } }
        supervised(w, function(agent)
            agent.clock.sleep(3)
            assert.is_table(w.proxy.routes_by_key[":443 web.example"])
            w.health.web = "never"
            agent.clock.sleep(3.5)
            assert.is_nil(w.proxy.routes_by_key[":443 web.example"], "withdrawn while unhealthy")
            w.health.web = nil -- the restarted container answers
            agent.clock.sleep(3)
        end)
        assert.same({ "unhealthy", "route-withdrawn", "restarted", "route-restored" },
            kinds(w, { unhealthy = true, ["route-withdrawn"] = true, restarted = true, ["route-restored"] = true }))
        assert.is_table(w.proxy.routes_by_key[":443 web.example"])
        assert.equal("running", w.runtime.inspect("web").state)
    end)

    it("a component that dies has its routes withdrawn until it runs again", function()
        local w = t.world{ services = { web() }, images = { IMG } }
        supervised(w, function(agent)
            agent.clock.sleep(2)
            w.runtime.kill("web", 137)
            agent.clock.sleep(0.001)
            assert.is_nil(w.proxy.routes_by_key[":443 web.example"])
            agent.clock.sleep(3)
        end)
        assert.same({ "died", "route-withdrawn", "restarted", "route-restored" },
            kinds(w, { died = true, ["route-withdrawn"] = true, restarted = true, ["route-restored"] = true }))
    end)

    it("an mc-proxy that refuses the restore is retried with backoff", function()
        local w = t.world{ services = { web() }, images = { IMG } }
        supervised(w, function(agent)
            agent.clock.sleep(2)
            w.runtime.kill("web", 137)
            w.proxy_down = true
            agent.clock.sleep(8)
            assert.equal(0, count(w, "route-restored"))
            w.proxy_down = false
            agent.clock.sleep(30)
        end)
        assert.equal(1, count(w, "route-restored"))
        assert.is_table(w.proxy.routes_by_key[":443 web.example"])
    end)
end)

describe("drift", function()
    local function drifted_world(labels)
        local svc = t.service(web())
        local run_spec = spec.container(svc, svc.components[1])
        return t.world{ services = { web() }, images = { IMG },
            containers = { { name = "web", image = IMG, state = "running", ports = run_spec.ports,
                             labels = labels } } }
    end

    it("is reported once per change, and the container left alone in report mode", function()
        local w = drifted_world({ ["mcp.spec-hash"] = "0000000000000000" })
        supervised(w, function(agent, sup)
            sup.reconcile()
            sup.reconcile()
            assert.equal(1, count(w, "drift"))
            assert.equal("drifted", agent.registry.supervision("web", "web").state)
        end, { no_recover = true })
        assert.equal(1, count(w, "drift"))
        assert.same({}, w.runtime.mutations())
    end)

    it("a container the agent did not create is reported, not replaced", function()
        local w = drifted_world(nil)
        supervised(w, function(_, sup) sup.reconcile() end, { no_recover = true })
        local found
        for _, e in ipairs(w:events()) do
            if e.kind == "drift" then found = e.message end
        end
        assert.truthy(found and found:find("not created by the agent", 1, true), found)
        assert.same({}, w.runtime.mutations())
    end)

    it("with drift = fix a component up past the stable period starts its count again", function()
        local w = drifted_world({ ["mcp.spec-hash"] = "0000000000000000" })
        local heard = {}
        local policy = setmetatable({ on_exit = function(a, c, info)
            heard[#heard + 1] = info.restarts
            return builtin.on_exit(a, c, info)
        end }, { __index = builtin })
        w:run(function(agent)
            -- six restarts long ago, then up for longer than STABLE_AFTER
            agent.registry.set_supervision("web", "web", { restarts = 6, state = "running",
                started_at = agent.clock.wallclock() - builtin.STABLE_AFTER - 60 })
            local sup = supervisor.new(agent, { policy = function() return policy end,
                builtin = function() return builtin end, interval = 5, drift = "fix" })
            sup.start()
            agent.clock.sleep(0.001)
            sup.reconcile()
            agent.clock.sleep(0.5) -- FIRST_DELAY is 0: recreated at once, not after 32 s
            sup.stop()
        end, { max_time = 100 })
        assert.same({ 0 }, heard)
        local ops = {}
        for _, m in ipairs(w.runtime.mutations()) do ops[#ops + 1] = m.op end
        assert.same({ "remove", "run" }, ops)
    end)

    it("with drift = fix the container is recreated through the lifecycle", function()
        local w = drifted_world({ ["mcp.spec-hash"] = "0000000000000000" })
        supervised(w, function(agent, sup)
            sup.reconcile()
            agent.clock.sleep(1)
            sup.reconcile()
        end, { drift = "fix", no_recover = true })
        assert.equal(1, count(w, "drift"))
        local ops = {}
        for _, m in ipairs(w.runtime.mutations()) do ops[#ops + 1] = m.op end
        assert.same({ "remove", "run" }, ops)
        local svc = t.service(web())
        assert.equal(spec.container(svc, svc.components[1]).labels["mcp.spec-hash"],
            w.runtime.inspect("web").labels["mcp.spec-hash"])
    end)
end)
