-- mcp.lifecycle, the one way a component comes up: the same behaviour
-- through each of its callers — deploy and start (mcp.host.ops), recover
-- (policy.recover) and boot (policy.boot) — on mcp.testing.
local t = require("mcp.testing")
local spec = require("mcp.spec")
local ops = require("mcp.host.ops")
local recover = require("policy.recover")
local boot = require("policy.boot")

local IMG = "localhost/app:1"

local function service(extra)
    local s = { name = "app", image = IMG, routes = { { name = "web", port = 8080, host_port = 10080,
                                                       hostname = "app.example" } } }
    for k, v in pairs(extra or {}) do s[k] = v end
    return s
end

-- Each path brings service "app" up and returns whether it reported success.
local PATHS = {
    deploy = function(agent)
        -- the registry stores the definition; the fake's stand-in returns the stored service
        agent.registry.deploy = function(name) return agent.registry.service(name) end
        agent.config.pull = "never" -- pulling is pull_spec.lua's
        local resp = ops.deploy(agent, "app", "app.toml")
        return resp.ok
    end,
    start = function(agent)
        return ops.service_action(agent, "start", "app").ok
    end,
    recover = function(agent)
        local r = recover.run(agent, {})
        return #r.failed == 0 and #r.skipped == 0
    end,
    boot = function(agent)
        -- a later stage: the foundation (first stage) would retry a missing image for ever
        local stages = { { name = "foundation", services = {} }, { name = "apps", services = { "app" }, timeout = 5 } }
        return boot.run(agent, stages, {}).healthy
    end,
}
local ORDER = { "deploy", "start", "recover", "boot" }

local function ops_of(w)
    local out = {}
    for _, m in ipairs(w.runtime.mutations()) do out[#out + 1] = m.op end
    return table.concat(out, " ")
end

local function world(opts)
    opts = opts or {}
    return t.world{ services = { service(opts.service) }, images = opts.images or { IMG },
                    containers = opts.containers }
end

-- A container record for "app" as the runtime would hold it.
local function container(state, labels)
    return { name = "app", image = IMG, state = state, exit_code = state == "running" and 0 or 1,
             labels = labels }
end

local function current_labels()
    local svc = t.service(service())
    return spec.container(svc, svc.components[1]).labels
end

for _, path in ipairs(ORDER) do
    describe("lifecycle through " .. path, function()
        it("clears podman's 'name in use' once and runs again", function()
            local w = world()
            w.runtime.fail_next("run", "name in use", 'the container name "app" is already in use')
            local ok = w:run(PATHS[path])
            assert.is_true(ok)
            assert.equal("run remove run", ops_of(w))
            assert.equal("running", w.runtime.inspect("app").state)
        end)

        it("skips a missing image and never removes the container it has", function()
            local w = world({ images = {}, containers = { container("exited", { ["mcp.spec-hash"] = "old" }) } })
            local ok = w:run(PATHS[path])
            assert.is_false(ok)
            assert.equal("", ops_of(w))
            assert.equal("exited", w.runtime.inspect("app").state)
            assert.is_true(w:logged("warn", "image localhost/app:1 not found"))
        end)

        it("replaces a stale container made from another spec", function()
            local w = world({ containers = { container("exited", { ["mcp.spec-hash"] = "old" }) } })
            assert.is_true(w:run(PATHS[path]))
            assert.equal("remove run", ops_of(w))
            local rec = w.runtime.inspect("app")
            assert.equal("running", rec.state)
            assert.equal(current_labels()["mcp.spec-hash"], rec.labels["mcp.spec-hash"])
        end)

        it("retries a refused route registration", function()
            local w = world()
            w.proxy.fail_next("refused")
            assert.is_true(w:run(PATHS[path]))
            assert.is_table(w.proxy.routes_by_key[":443 app.example"])
            assert.is_false(w:logged("warn", "cannot register route"))
        end)
    end)
end

describe("lifecycle reuse", function()
    it("start starts the same container again when its spec is current; recover and boot recreate it", function()
        for _, case in ipairs({ { "start", "start" }, { "recover", "remove run" }, { "boot", "remove run" } }) do
            local w = world({ containers = { container("exited", current_labels()) } })
            assert.is_true(w:run(PATHS[case[1]]))
            assert.equal(case[2], ops_of(w), case[1])
        end
    end)

    it("deploy replaces even a running container; start leaves it alone", function()
        local w = world({ containers = { container("running", current_labels()) } })
        assert.is_true(w:run(PATHS.deploy))
        assert.equal("remove run", ops_of(w))
        local w2 = world({ containers = { container("running", current_labels()) } })
        assert.is_true(w2:run(PATHS.start))
        assert.equal("", ops_of(w2))
    end)
end)

describe("orphans", function()
    local function two_components()
        return { name = "shop", components = {
            { name = "api", image = IMG,
              routes = { { name = "a", port = 80, host_port = 10081, hostname = "api.shop" } } },
            { name = "worker", image = IMG,
              routes = { { name = "w", port = 80, host_port = 10082, hostname = "w.shop" } } },
        } }
    end

    it("a redeploy without a component removes its container and its route", function()
        local w = t.world{ services = { two_components() }, images = { IMG } }
        w:run(function(agent)
            recover.run(agent, {})
            assert.is_table(w.proxy.routes_by_key[":443 w.shop"])
            -- the new definition keeps only api
            local new = two_components()
            new.components[2] = nil
            w.registry.put(new)
            agent.registry.deploy = function(name) return agent.registry.service(name) end
            local resp = ops.deploy(agent, "shop", "shop.toml")
            assert.is_true(resp.ok)
            local said = table.concat(resp.messages, "\n")
            assert.truthy(said:find("shop-worker: removed", 1, true), said)
        end)
        assert.is_nil(w.runtime.inspect("shop-worker"))
        assert.equal("running", w.runtime.inspect("shop-api").state)
        assert.is_nil(w.proxy.routes_by_key[":443 w.shop"])
        assert.is_table(w.proxy.routes_by_key[":443 api.shop"])
    end)

    it("rm removes every container labelled with the service", function()
        local w = t.world{ services = { two_components() }, images = { IMG } }
        w:run(function(agent)
            recover.run(agent, {})
            -- an older definition's component, still running
            w.runtime.run{ name = "shop-old", image = IMG,
                           labels = { ["mcp.service"] = "shop", ["mcp.component"] = "old" } }
            w.runtime.run{ name = "other", image = IMG, labels = { ["mcp.service"] = "other" } }
            local resp = ops.remove(agent, "shop")
            assert.is_true(resp.ok)
        end)
        for _, n in ipairs({ "shop-api", "shop-worker", "shop-old" }) do assert.is_nil(w.runtime.inspect(n), n) end
        assert.equal("running", w.runtime.inspect("other").state)
        assert.is_nil(w.registry.service("shop"))
    end)
end)

describe("recover and the spec-hash", function()
    it("replaces a running container the agent made from an older definition", function()
        local w = world({ containers = { container("running", { ["mcp.spec-hash"] = "0000000000000000" }) } })
        local r = w:run(function(agent) return recover.run(agent, {}) end)
        assert.equal(1, #r.recovered)
        assert.equal("remove run", ops_of(w))
        assert.equal(current_labels()["mcp.spec-hash"], w.runtime.inspect("app").labels["mcp.spec-hash"])
    end)

    it("leaves a running container without labels (not the agent's) alone", function()
        local w = world({ containers = { container("running", nil) } })
        local r = w:run(function(agent) return recover.run(agent, {}) end)
        assert.equal(1, #r.already_running)
        assert.equal("", ops_of(w))
    end)
end)
