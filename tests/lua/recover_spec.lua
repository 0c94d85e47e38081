-- policies/recover.lua on mcp.testing (SPEC §5).
local root = debug.getinfo(1, "S").source:match("^@(.-)tests/lua/[^/]*$") or "./"
package.path = root .. "lua/?.lua;" .. root .. "lua/?/init.lua;" .. package.path

local t = require("mcp.testing")
local recover = require("policy.recover")

local IMG = "localhost/app:1"

local function names(list)
    local out = {}
    for i, e in ipairs(list) do out[i] = e.container end
    return out
end

local function mutations(w)
    local out = {}
    for _, e in ipairs(w.runtime.mutations()) do out[#out + 1] = e.op .. " " .. e.name end
    return out
end

local function run_recover(w, opts)
    return w:run(function(agent) return recover.run(agent, opts or {}) end)
end

describe("recover", function()
    it("two recovers at once create each container once (the second looks again under the lock)", function()
        local w = t.world{ services = { { name = "alpha", image = IMG }, { name = "beta", image = IMG } },
                           images = { IMG }, latency = { run = 0.3, list = 0.05, inspect = 0.01 } }
        local a, b = w:run(function(agent)
            local one = agent.task.spawn(function() return recover.run(agent, {}) end)
            local two = agent.task.spawn(function() return recover.run(agent, {}) end)
            local _, r1 = agent.task.wait(one)
            local _, r2 = agent.task.wait(two)
            return r1, r2
        end)
        assert.same({ "run alpha", "run beta" }, mutations(w))
        assert.same({ "alpha", "beta" }, names(a.recovered))
        assert.same({ "alpha", "beta" }, names(b.already_running))
    end)

    it("runs a missing container and leaves a running one alone", function()
        local w = t.world{
            services = { { name = "alpha", image = IMG }, { name = "beta", image = IMG } },
            images = { IMG },
            containers = { { name = "beta", image = IMG, state = "running" } },
        }
        local r = run_recover(w)
        assert.same({ "alpha" }, names(r.recovered))
        assert.same({ "beta" }, names(r.already_running))
        assert.same({}, r.failed)
        assert.same({}, r.skipped)
        assert.same({ "run alpha" }, mutations(w))
        assert.equal("running", w.runtime.container("alpha").state)
    end)

    it("removes and recreates exited and created containers", function()
        local w = t.world{
            services = { { name = "ex", image = IMG }, { name = "cr", image = IMG } },
            images = { IMG },
            containers = { { name = "ex", image = IMG, state = "exited", exit_code = 1 },
                           { name = "cr", image = IMG, state = "created" } },
        }
        local r = run_recover(w)
        assert.same({ "cr", "ex" }, names(r.recovered))
        assert.same({ "remove cr", "run cr", "remove ex", "run ex" }, mutations(w))
        assert.equal("running", w.runtime.container("ex").state)
        local ev = w.registry.events("ex", 1)[1]
        assert.equal("recovered", ev.kind)
        assert.matches("was exited", ev.message)
    end)

    it("leaves desired-stopped components and inactive services alone", function()
        local w = t.world{
            services = {
                { name = "svc", components = {
                    { name = "web", image = IMG },
                    { name = "worker", image = IMG, desired_state = "stopped" } } },
                { name = "off", image = IMG, active = false },
            },
            images = { IMG },
        }
        local r = run_recover(w)
        assert.same({ "svc-web" }, names(r.recovered))
        assert.same({ "run svc-web" }, mutations(w))
        assert.is_nil(w.runtime.container("svc-worker"))
        assert.is_nil(w.runtime.container("off"))
    end)

    it("skips a component whose image is missing, with a warning", function()
        local w = t.world{
            services = { { name = "noimg", image = "localhost/gone:1" }, { name = "ok", image = IMG } },
            images = { IMG },
        }
        local r = run_recover(w)
        assert.same({ "noimg" }, names(r.skipped))
        assert.equal("no such image", r.skipped[1].reason)
        assert.same({ "ok" }, names(r.recovered))
        assert.equal(1, #r.warnings)
        assert.matches("localhost/gone:1", r.warnings[1])
        assert.is_true(w:logged("warn", "localhost/gone:1"))
        -- `run` is what finds out (no image check per component): it fails and leaves nothing.
        assert.same({ "run noimg", "run ok" }, mutations(w))
        assert.is_false(w.runtime.mutations()[1].ok)
        assert.is_nil(w.runtime.container("noimg"))
        assert.same({}, w.registry.events("noimg", 5))
    end)

    it("checks the image before removing a stale container, and keeps it when the image is gone", function()
        local w = t.world{
            services = { { name = "old", image = "localhost/gone:1" }, { name = "ex", image = IMG } },
            images = { IMG },
            containers = { { name = "old", image = "localhost/gone:1", state = "exited" },
                           { name = "ex", image = IMG, state = "exited" } },
        }
        local r = run_recover(w)
        assert.same({ "old" }, names(r.skipped))
        assert.same({ "ex" }, names(r.recovered))
        assert.same({ "remove ex", "run ex" }, mutations(w))
        assert.equal("exited", w.runtime.container("old").state)
    end)

    it("runs a missing container without a separate image check", function()
        local w = t.world{ services = { { name = "a", image = IMG } }, images = { IMG } }
        run_recover(w)
        local ops = {}
        for _, op in ipairs(w.runtime.ops()) do ops[#ops + 1] = op.op end
        assert.same({ "list", "run" }, ops)
    end)

    it("tells opts.on_component about each component as soon as it is done", function()
        local w = t.world{
            services = { { name = "a", image = IMG }, { name = "b", image = "localhost/none:1" },
                         { name = "c", image = IMG } },
            images = { IMG }, latency = { run = 1 },
            containers = { { name = "c", image = IMG, state = "running" } },
        }
        local seen = {}
        w:run(function(agent)
            return recover.recover(agent, { parallel = 1, on_component = function(svc, comp, out)
                seen[#seen + 1] = { svc.name, comp.name, out.outcome, agent.clock.now() }
            end })
        end)
        assert.same({ { "a", "a", "recovered", 1 }, { "b", "b", "skipped", 2 },
                      { "c", "c", "already_running", 2 } }, seen)
    end)

    it("reports a failed run with its reason and records a failure event", function()
        local w = t.world{ services = { { name = "bad", image = IMG } }, images = { IMG } }
        w.runtime.fail_next("run", "failed", "OCI runtime error: exec failed")
        local r = run_recover(w)
        assert.same({ "bad" }, names(r.failed))
        assert.equal("OCI runtime error: exec failed", r.failed[1].reason)
        assert.same({}, r.recovered)
        assert.equal("failed", w.registry.events("bad", 1)[1].kind)
    end)

    it("clears a name only podman's storage still holds, then runs again", function()
        -- After podman loses its database, `ps -a` is empty but run says "name in use".
        local w = t.world{ services = { { name = "ghost", image = IMG } }, images = { IMG } }
        w.runtime.fail_next("run", "name in use", "the container name \"ghost\" is already in use")
        local r = run_recover(w)
        assert.same({ "ghost" }, names(r.recovered))
        assert.same({ "run ghost", "remove ghost", "run ghost" }, mutations(w))
        assert.equal("running", w.runtime.container("ghost").state)
    end)

    it("fails a component when the stale container cannot be removed", function()
        local w = t.world{ services = { { name = "s", image = IMG } }, images = { IMG },
                           containers = { { name = "s", image = IMG, state = "exited" } } }
        w.runtime.fail_next("remove", "timeout")
        local r = run_recover(w)
        assert.same({ "s" }, names(r.failed))
        assert.matches("cannot remove stale container: timeout", r.failed[1].reason)
        assert.same({ "remove s" }, mutations(w))
    end)

    it("fails every candidate (no mutation) when the runtime cannot list", function()
        local w = t.world{ services = { { name = "a", image = IMG }, { name = "b", image = IMG } },
                           images = { IMG } }
        w.runtime.fail_next("list", "podman not found")
        local r = run_recover(w)
        assert.same({ "a", "b" }, names(r.failed))
        assert.matches("podman not found", r.failed[1].reason)
        assert.same({}, mutations(w))
    end)

    it("is idempotent: a second run finds everything running and changes nothing", function()
        local w = t.world{
            services = { { name = "a", image = IMG }, { name = "b", components = {
                { name = "x", image = IMG }, { name = "y", image = IMG } } } },
            images = { IMG },
            containers = { { name = "b-x", image = IMG, state = "exited" } },
        }
        local first = run_recover(w)
        assert.equal(3, #first.recovered)
        w.runtime.clear_ops()
        local second = run_recover(w)
        assert.same({}, second.recovered)
        assert.same({ "a", "b-x", "b-y" }, names(second.already_running))
        assert.same({}, mutations(w))
        local listed = 0
        for _, op in ipairs(w.runtime.ops()) do if op.op == "list" then listed = listed + 1 end end
        assert.equal(1, listed, "containers are listed once per run")
    end)

    it("dry run lists the plan and touches nothing", function()
        local w = t.world{
            services = { { name = "a", image = IMG }, { name = "b", image = IMG },
                         { name = "c", image = IMG }, { name = "d", image = "localhost/none:1" } },
            images = { IMG },
            containers = { { name = "b", image = IMG, state = "exited" },
                           { name = "c", image = IMG, state = "running" } },
        }
        local r = run_recover(w, { dry_run = true })
        assert.is_true(r.dry_run)
        assert.same({ "a", "b" }, names(r.planned))
        assert.equal("run", r.planned[1].action)
        assert.equal("recreate", r.planned[2].action)
        assert.same({ "c" }, names(r.already_running))
        assert.same({ "d" }, names(r.skipped))
        assert.same({}, r.recovered)
        assert.same({}, mutations(w))
        assert.same({}, w:events())
        assert.equal("exited", w.runtime.container("b").state)
    end)

    it("takes dry run from agent.config too", function()
        local w = t.world{ services = { { name = "a", image = IMG } }, images = { IMG },
                           config = { dry_run = true } }
        local r = run_recover(w)
        assert.same({ "a" }, names(r.planned))
        assert.same({}, mutations(w))
    end)

    it("gives routes their host ports and PORT env in the run spec", function()
        local w = t.world{
            services = { { name = "mc", components = { { name = "api", image = IMG,
                ports = { "127.0.0.1:18443:8443/tcp" }, env = { "LOG=info" },
                routes = { { name = "rest", port = 8443, mode = "l7", hostname = "mc.example", host_port = 10001 },
                           { name = "grpc-api", mode = "l4", hostname = "g.example", host_port = 10002 } } } } } },
            images = { IMG },
        }
        local r = run_recover(w)
        assert.same({ "mc-api" }, names(r.recovered))
        local spec = w.runtime.mutations()[1].spec
        assert.same({ "127.0.0.1:18443:8443/tcp", "127.0.0.1:10001:8443/tcp", "127.0.0.1:10002:10002/tcp" },
            spec.ports)
        assert.same({ "LOG=info", "PORT=8443", "PORT_REST=8443", "PORT_GRPC_API=10002" }, spec.env)
        local rec = w.runtime.container("mc-api")
        assert.equal(10001, rec.ports[2].host_port)
        assert.equal(8443, rec.ports[2].container_port)
        -- Routes registered with mc-proxy, the L7 one with a certificate.
        local routes = w.proxy.list_routes()
        assert.equal(2, #routes)
        assert.equal("127.0.0.1:10002", routes[1].backend)
        assert.equal("l7", routes[2].mode)
        assert.equal("/certs/mc.pem", routes[2].cert_path)
        assert.same({ { service = "mc", hostnames = { "mc.example" } } }, w.certs.issued)
    end)

    it("treats mc-proxy and Metacrypt being down as warnings only", function()
        local w = t.world{
            services = { { name = "mc", image = IMG,
                routes = { { name = "rest", port = 80, mode = "l7", hostname = "mc.example", host_port = 10001 } } } },
            images = { IMG },
        }
        w.certs_down = true
        local r = run_recover(w)
        assert.same({ "mc" }, names(r.recovered))
        assert.equal(1, #r.warnings)
        assert.matches("certificate", r.warnings[1])
        w.runtime.kill("mc")
        w.certs_down, w.proxy_down = false, true
        r = run_recover(w)
        assert.same({ "mc" }, names(r.recovered))
        assert.matches("mc%-proxy: refused", r.warnings[1])
    end)

    it("works without agent.proxy and agent.certs", function()
        local w = t.world{ services = { { name = "a", image = IMG,
            routes = { { name = "r", port = 80, hostname = "a.example", host_port = 10001 } } } },
            images = { IMG }, proxy = false, certs = false }
        local r = run_recover(w)
        assert.same({ "a" }, names(r.recovered))
        assert.same({}, r.warnings)
    end)

    it("recovers services concurrently with bounded parallelism, reporting in sorted order", function()
        local services = {}
        for i = 10, 1, -1 do services[#services + 1] = { name = string.format("s%02d", i), image = IMG } end
        local w = t.world{ services = services, images = { IMG }, latency = { run = 1 } }
        local r = run_recover(w)
        local expect = {}
        for i = 1, 10 do expect[i] = string.format("s%02d", i) end
        assert.same(expect, names(r.recovered))
        -- 10 runs of 1 s with 4 workers: 3 rounds, not 10 s.
        assert.is_true(w:now() >= 3 and w:now() < 4, "took " .. w:now())
        -- No more than 4 runs start in the same instant.
        local at = {}
        for _, op in ipairs(w.runtime.mutations()) do at[op.time] = (at[op.time] or 0) + 1 end
        for time, n in pairs(at) do assert.is_true(n <= 4, n .. " runs at " .. time) end
    end)

    it("gives the same report for the same world every time", function()
        local function once()
            local w = t.world{
                services = { { name = "z", image = IMG }, { name = "a", image = "localhost/none:1" },
                             { name = "m", components = { { name = "b", image = IMG },
                                                          { name = "a", image = IMG } } } },
                images = { IMG }, latency = { run = 0.5, default = 0.01 },
            }
            w.runtime.fail_next("run", "failed", "x")
            return run_recover(w)
        end
        local r1, r2 = once(), once()
        assert.same(r1, r2)
        -- The injected failure hits the first run, a's: its image is missing,
        -- but it is the run that would have found out.
        assert.same({ "a" }, names(r1.failed))
        assert.same({ "a", "m-a", "m-b", "z" }, (function()
            local all = {}
            for _, e in ipairs(r1.recovered) do all[#all + 1] = e.container end
            for _, e in ipairs(r1.failed) do all[#all + 1] = e.container end
            table.sort(all)
            return all
        end)())
    end)

    it("turns a policy error in a worker into failed entries, not a crash", function()
        local w = t.world{ services = { { name = "a", image = IMG }, { name = "b", image = IMG } },
                           images = { IMG } }
        local real_run = w.runtime.run
        w.runtime.run = function(spec)
            if spec.name == "a" then error("kaboom") end
            return real_run(spec)
        end
        local r = run_recover(w)
        assert.same({ "b" }, names(r.recovered))
        assert.same({ "a" }, names(r.failed))
        assert.matches("kaboom", r.warnings[1])
    end)
end)
