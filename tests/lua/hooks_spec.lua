-- supervise.on_event hooks (mcp.hooks) and the webhook example policy,
-- on mcp.testing's virtual clock.
local t = require("mcp.testing")
local hooks_mod = require("mcp.hooks")

local root = debug.getinfo(1, "S").source:match("^@(.-)tests/lua/[^/]*$") or "./"

local function event(kind, extra)
    local e = { time_unix_ms = 0, service = "web", component = "web", kind = kind, message = kind .. " happened",
                exit_code = 0 }
    for k, v in pairs(extra or {}) do e[k] = v end
    return e
end

describe("mcp.hooks", function()
    it("runs on_event in its own task: dispatch returns at once", function()
        local w = t.world{}
        local seen = {}
        local policy = { on_event = function(agent, e)
            agent.clock.sleep(5)
            seen[#seen + 1] = e.kind
        end }
        w:run(function(agent)
            local h = hooks_mod.new(agent, { policy = function() return policy end })
            local before = agent.clock.now()
            h.dispatch(event("died"))
            h.dispatch(event("restarted"))
            assert.equal(before, agent.clock.now())
            assert.same({}, seen)
            agent.clock.sleep(6)
        end)
        assert.same({ "died", "restarted" }, seen)
    end)

    it("logs a hook that raises with its traceback", function()
        local w = t.world{}
        w:run(function(agent)
            local failing = { on_event = function() error("hook bug") end }
            local h = hooks_mod.new(agent, { policy = function() return failing end })
            h.dispatch(event("died"))
            agent.clock.sleep(1)
        end)
        assert.is_true(w:logged("error", "on_event failed"))
        local l = w.logs[#w.logs]
        assert.truthy(l.fields.error:find("hook bug", 1, true))
        assert.truthy(l.fields.error:find("traceback", 1, true))
    end)

    it("cancels a hook that sleeps past its budget", function()
        local w = t.world{}
        local woke
        w:run(function(agent)
            local h = hooks_mod.new(agent, { budget = 3, policy = function()
                return { on_event = function(a) woke = { a.clock.sleep(1e6) }; woke.at = a.clock.now() end }
            end })
            h.dispatch(event("died"))
            agent.clock.sleep(5)
            assert.equal(0, h.in_flight)
        end)
        -- its sleep was cut short at the budget: cancelled
        assert.same({ nil, "cancelled" }, { woke[1], woke[2] })
        assert.is_true(woke.at <= 3.001, "woke at " .. tostring(woke.at))
        assert.is_true(w:logged("warn", "longer than 3s; cancelled"))
    end)

    it("bounds the hooks running at once", function()
        local w = t.world{}
        w:run(function(agent)
            local h = hooks_mod.new(agent, { max_in_flight = 2, policy = function()
                return { on_event = function(a) a.clock.sleep(1) end }
            end })
            for _ = 1, 5 do h.dispatch(event("died")) end
            assert.equal(2, h.in_flight)
            assert.equal(3, h.dropped)
            agent.clock.sleep(2)
        end)
    end)

    it("does nothing for a policy without on_event", function()
        local w = t.world{}
        w:run(function(agent)
            hooks_mod.new(agent, { policy = function() return {} end }).dispatch(event("died"))
        end)
        assert.same({}, w.logs)
    end)
end)

describe("policies/examples/webhook/supervise.lua", function()
    local function load_example()
        return dofile(root .. "policies/examples/webhook/supervise.lua")
    end

    it("posts a crash loop once per suppression window, then a recovery notice", function()
        local w = t.world{ services = { { name = "web", image = "img:1" } } }
        local policy = load_example()
        w:run(function(agent)
            agent.registry.set_supervision("web", "web", { restarts = 5 })
            policy.on_event(agent, event("backoff"))
            policy.on_event(agent, event("backoff"))   -- suppressed
            agent.clock.sleep(policy.SUPPRESS + 1)
            policy.on_event(agent, event("gave-up"))
            policy.on_event(agent, event("healthy"))
            policy.on_event(agent, event("healthy"))   -- already said
        end)
        local texts = {}
        for _, r in ipairs(w.http_requests) do
            assert.equal("POST", r.method)
            assert.equal(policy.WEBHOOK, r.url)
            texts[#texts + 1] = require("cjson").decode(r.body).text
        end
        assert.equal(3, #texts)
        assert.truthy(texts[1]:find("is crash%-looping"))
        assert.truthy(texts[2]:find("gave up"))
        assert.truthy(texts[3]:find("recovered"))
    end)

    it("keeps quiet about a component that restarted only a few times", function()
        local w = t.world{ services = { { name = "web", image = "img:1" } } }
        local policy = load_example()
        w:run(function(agent)
            agent.registry.set_supervision("web", "web", { restarts = 1 })
            policy.on_event(agent, event("backoff"))
            policy.on_event(agent, event("died"))
        end)
        assert.same({}, w.http_requests)
    end)
end)
