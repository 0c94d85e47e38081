-- policies/boot.lua on the virtual clock (SPEC §6).
local root = debug.getinfo(1, "S").source:match("^@(.-)tests/lua/[^/]*$") or "./"
package.path = root .. "lua/?.lua;" .. root .. "lua/?/init.lua;" .. package.path

local t = require("mcp.testing")
local boot = require("policy.boot")
local backoff = require("policy.backoff")

local IMG = "localhost/app:1"

-- A service with one published port (host port = 10000 + n).
local function svc(name, n, extra)
    local s = { name = name, image = IMG, ports = { string.format("127.0.0.1:%d:80/tcp", 10000 + n) } }
    for k, v in pairs(extra or {}) do s[k] = v end
    return s
end

local function run_ops(w)
    local out = {}
    for _, e in ipairs(w.runtime.mutations()) do out[#out + 1] = e.op .. " " .. e.name end
    return out
end

local function first_op_time(w, op, name)
    for _, e in ipairs(w.runtime.ops()) do
        if e.op == op and e.name == name then return e.time end
    end
end

local OPTS = { backoff = { base = 0.5, cap = 4, jitter = "full", random = backoff.seeded(7) } }

local function boot_opts(extra)
    local o = {}
    for k, v in pairs(OPTS) do o[k] = v end
    o.backoff = { base = 0.5, cap = 4, jitter = "full", random = backoff.seeded(7) }
    for k, v in pairs(extra or {}) do o[k] = v end
    return o
end

describe("boot", function()
    it("runs stages in order and starts only each stage's own services", function()
        local w = t.world{
            services = { svc("db", 1), svc("auth", 2), svc("web", 3), svc("api", 4) },
            images = { IMG },
            health = { db = { after = 3 }, auth = { after = 1 }, web = { after = 2 }, api = { after = 0 } },
        }
        local stages = {
            { name = "foundation", services = { "db", "auth" }, timeout = 30, health = "tcp" },
            { name = "apps", services = { "web", "api" }, timeout = 30, health = "tcp" },
        }
        local r = w:run(function(agent) return boot.run(agent, stages, boot_opts()) end)
        assert.is_true(r.healthy)
        assert.equal(2, #r.stages)
        assert.same({ "run auth", "run db", "run api", "run web" }, run_ops(w))
        -- The apps are started only after every foundation service is healthy.
        local db_healthy_at
        for _, p in ipairs(w.probe_log) do
            if p.container == "db" and p.ok then db_healthy_at = p.time end
        end
        assert.is_true(db_healthy_at >= 3)
        assert.is_true(first_op_time(w, "run", "web") >= db_healthy_at)
        local f = r.stages[1]
        assert.equal("foundation", f.name)
        assert.same({ "auth", "db" }, { f.services[1].service, f.services[2].service })
        assert.is_true(f.services[2].healthy)
        assert.is_true(f.services[2].time_to_healthy >= 3 and f.services[2].time_to_healthy < 8)
        assert.is_true(f.services[2].attempts > 1)
        assert.is_true(w:logged("info", "boot stage apps healthy"))
    end)

    it("probes a stage's components concurrently", function()
        local services, names = {}, {}
        for i = 1, 5 do
            services[i] = svc("s" .. i, i)
            names[i] = "s" .. i
        end
        local w = t.world{ services = services, images = { IMG }, health_default = { after = 10 } }
        local r = w:run(function(agent)
            return boot.run(agent, { { name = "only", services = names, timeout = 60 } }, boot_opts())
        end)
        assert.is_true(r.healthy)
        -- Sequential probing would need 5 x 10 s; concurrent needs about 10 s.
        assert.is_true(w:now() < 15, "took " .. w:now())
    end)

    it("uses the component's own health check, else the stage's, on the mapped host port", function()
        local w = t.world{
            services = {
                { name = "g", image = IMG, ports = { "127.0.0.1:10001:9000/tcp" },
                  health = { check = "http", port = 9000, path = "/healthz" } },
                { name = "r", image = IMG,
                  routes = { { name = "api", port = 8443, host_port = 10002 } } },
            },
            images = { IMG },
        }
        w:run(function(agent)
            return boot.run(agent, { { name = "s", services = { "g", "r" }, health = "grpc" } }, boot_opts())
        end)
        local seen = {}
        for _, p in ipairs(w.probe_log) do seen[p.container] = p.kind .. " " .. p.host .. ":" .. p.port end
        assert.equal("http 127.0.0.1:10001", seen.g)
        assert.equal("grpc 127.0.0.1:10002", seen.r)
    end)

    it("foundation retries for a long virtual time and stops at once on cancel", function()
        local w = t.world{ services = { svc("db", 1), svc("later", 2) }, images = { IMG },
                           health = { db = "never" } }
        local stages = { { name = "foundation", services = { "db" }, timeout = 60 },
                         { name = "apps", services = { "later" }, timeout = 60 } }
        local r, why = w:run(function(agent) return boot.run(agent, stages, boot_opts()) end,
            { cancel_after = 6 * 3600 })
        -- Waiting on a cancelled task gives nil, "cancelled": look at the world.
        assert.is_nil(r)
        assert.equal("cancelled", why)
        assert.is_true(w:now() >= 6 * 3600 and w:now() < 6 * 3600 + 1)
        local probes = 0
        for _, p in ipairs(w.probe_log) do if p.container == "db" then probes = probes + 1 end end
        -- Backoff capped at 4 s: thousands of attempts over 6 h, never the next stage.
        assert.is_true(probes > 1000, probes .. " probes")
        assert.is_nil(w.runtime.container("later"))
        assert.is_true(w:logged("warn", "foundation stage foundation not healthy after 60s"))
        assert.equal(0, w.sched.pending_timers(), "cancel leaves no timer behind")
    end)

    it("reports cancellation in its own report when the boot task is cancelled", function()
        local w = t.world{ services = { svc("db", 1) }, images = { IMG }, health = { db = "never" } }
        local report
        local h = w:spawn(function(agent)
            report = boot.run(agent, { { name = "f", services = { "db" } } }, boot_opts())
            return report
        end)
        w:advance(100)
        w.sched.cancel(h)
        w.sched.run_until_idle()
        assert.is_true(report.cancelled)
        assert.is_false(report.healthy)
        assert.is_true(report.stages[1].cancelled)
    end)

    it("restarts a foundation container that dies while boot waits", function()
        local w = t.world{ services = { svc("db", 1) }, images = { IMG }, health = { db = { after = 20 } } }
        w.sched.spawn(function()
            w.sched.sleep(5)
            w.runtime.kill("db", 137)
        end)
        local r = w:run(function(agent)
            return boot.run(agent, { { name = "f", services = { "db" }, timeout = 60 } }, boot_opts())
        end)
        assert.is_true(r.healthy)
        local s = r.stages[1].services[1]
        assert.equal(1, s.restarts)
        assert.same({ "run db", "start db" }, run_ops(w))
        assert.is_true(s.time_to_healthy >= 25, "healthy 20 s after the restart, got " .. s.time_to_healthy)
        assert.equal("restarted", w.registry.events("db", 1)[1].kind)
        assert.is_true(w:logged("warn", "db is not running (container exited)"))
    end)

    it("keeps retrying a foundation whose image is missing without flooding the log", function()
        local w = t.world{ services = { svc("db", 1) }, images = {} }
        w:run(function(agent) return boot.run(agent, { { name = "f", services = { "db" } } }, boot_opts()) end,
            { cancel_after = 600 })
        local warns = {}
        for _, l in ipairs(w.logs) do
            if l.level == "warn" and l.msg:find("db", 1, true) then warns[#warns + 1] = l.msg end
        end
        -- The start's skip, the first "not running" and its skip: then quiet.
        assert.is_true(#warns <= 3, table.concat(warns, "\n"))
        assert.is_true(w:logged("warn", "db is not running (container missing)"))
        -- Each retry is a `run` that podman answers "no such image" (no separate image check).
        local runs, checks = 0, 0
        for _, op in ipairs(w.runtime.ops()) do
            if op.op == "run" then
                runs = runs + 1
                assert.equal("no such image", op.reason)
            elseif op.op == "image_exists" then
                checks = checks + 1
            end
        end
        assert.is_true(runs > 100, "kept retrying: " .. runs)
        assert.equal(0, checks)
    end)

    it("lets a later stage time out, warn and proceed", function()
        local w = t.world{
            services = { svc("db", 1), svc("slow", 2), svc("last", 3) },
            images = { IMG },
            health = { slow = "never" },
        }
        local stages = {
            { name = "foundation", services = { "db" }, timeout = 10 },
            { name = "apps", services = { "slow" }, timeout = 20 },
            { name = "edge", services = { "last" }, timeout = 20 },
        }
        local r = w:run(function(agent) return boot.run(agent, stages, boot_opts()) end)
        assert.is_false(r.healthy)
        assert.is_true(r.stages[1].healthy)
        local apps = r.stages[2]
        assert.is_false(apps.healthy)
        assert.is_true(apps.timed_out)
        assert.is_false(apps.services[1].healthy)
        assert.is_true(apps.elapsed >= 20 and apps.elapsed < 22, "elapsed " .. apps.elapsed)
        assert.is_true(r.stages[3].healthy)
        assert.is_true(w:logged("warn", "boot stage apps not healthy after 20s, proceeding"))
        assert.equal("running", w.runtime.container("last").state)
    end)

    it("starts active services in no stage after the last stage and reports unknown names", function()
        local w = t.world{
            services = { svc("db", 1), svc("extra", 2), svc("idle", 3, { active = false }) },
            images = { IMG },
            health = { db = { after = 5 } },
        }
        local r = w:run(function(agent)
            return boot.run(agent, { { name = "f", services = { "db", "ghost" }, timeout = 30 } }, boot_opts())
        end)
        assert.same({ "ghost" }, r.unknown)
        assert.same({ "ghost" }, r.stages[1].unknown)
        assert.is_true(w:logged("warn", "unknown service ghost"))
        assert.same({ "run db", "run extra" }, run_ops(w))
        assert.is_true(first_op_time(w, "run", "extra") >= 5)
        assert.equal(1, #r.unstaged.recovered)
        assert.is_nil(w.runtime.container("idle"))
    end)

    it("takes stages from agent.config.boot and plans only in a dry run", function()
        local w = t.world{
            services = { svc("db", 1), svc("web", 2) },
            images = { IMG },
            config = { boot = { { name = "f", services = { "db" }, timeout = 10, health = "tcp" } } },
        }
        local r = w:run(function(agent) return boot.run(agent, nil, boot_opts({ dry_run = true })) end)
        assert.same({}, run_ops(w))
        assert.equal(1, #r.stages[1].start.planned)
        assert.equal("db", r.stages[1].start.planned[1].container)
        assert.equal("web", r.unstaged.planned[1].container)
        assert.same({}, w.probe_log)
    end)

    it("counts a component without ports as healthy once running", function()
        local w = t.world{ services = { { name = "worker", image = IMG } }, images = { IMG } }
        local r = w:run(function(agent)
            return boot.run(agent, { { name = "f", services = { "worker" } } }, boot_opts())
        end)
        assert.is_true(r.healthy)
        assert.same({}, w.probe_log)
    end)

    it("refuses an unknown stage health method", function()
        local w = t.world{ services = { svc("db", 1) }, images = { IMG } }
        assert.has_error(function()
            w:run(function(agent)
                return boot.run(agent, { { name = "f", services = { "db" }, health = "ping" } }, boot_opts())
            end)
        end)
    end)
end)

describe("boot's cost on the runtime", function()
    local function count_ops(w, op)
        local n = 0
        for _, e in ipairs(w.runtime.ops()) do if e.op == op then n = n + 1 end end
        return n
    end

    it("starts a stage's services START_PARALLEL at a time (or opts.parallel)", function()
        local function boot_ten(opts)
            local services, names = {}, {}
            for i = 1, 10 do
                services[i] = svc(string.format("s%02d", i), i)
                names[i] = services[i].name
            end
            local w = t.world{ services = services, images = { IMG }, latency = { run = 1 } }
            local r = w:run(function(agent)
                return boot.run(agent, { { name = "only", services = names, timeout = 60 } }, opts)
            end)
            assert.is_true(r.healthy)
            assert.equal(10, #r.stages[1].start.recovered)
            return w:now(), r
        end
        assert.equal(4, boot.START_PARALLEL)
        local t4, r4 = boot_ten({})
        assert.is_true(t4 >= 3 and t4 < 3.2, "took " .. t4)
        -- The first four are healthy once their own run returned, not after all ten.
        assert.is_true(r4.stages[1].services[1].time_to_healthy < 1.1)
        local t10 = boot_ten({ parallel = 10 })
        assert.is_true(t10 >= 1 and t10 < 1.2, "took " .. t10)
    end)

    it("probes a container as soon as its own run returns, not after the whole stage started", function()
        local w = t.world{ services = { svc("a", 1), svc("b", 2), svc("c", 3) }, images = { IMG },
                           latency = { run = 1 } }
        w:run(function(agent)
            return boot.run(agent, { { name = "f", services = { "a", "b", "c" } } }, { parallel = 1 })
        end)
        local first_a
        for _, p in ipairs(w.probe_log) do
            if p.container == "a" then first_a = first_a or p.time end
        end
        -- a runs from 0 to 1 s, then b and c: a is probed (and healthy) at 1 s.
        assert.is_true(first_a >= 1 and first_a < 1.1, "first probe of a at " .. tostring(first_a))
    end)

    it("probes pinned ports without asking podman, and sees a service healthy within tens of ms", function()
        local services, names = {}, {}
        for i = 1, 8 do
            services[i] = svc("p" .. i, i)
            names[i] = "p" .. i
        end
        local health = {}
        for i = 1, 8 do health["p" .. i] = { after = 0.5 * i } end
        local w = t.world{ services = services, images = { IMG }, health = health }
        local r = w:run(function(agent)
            return boot.run(agent, { { name = "f", services = names, timeout = 60 } }, {})
        end)
        assert.is_true(r.healthy)
        assert.equal(0, count_ops(w, "inspect"))
        assert.equal(0, count_ops(w, "image_exists"))
        -- One list to start the stage, then shared liveness lists (at most ~1 per second).
        assert.is_true(count_ops(w, "list") <= 1 + 5, count_ops(w, "list") .. " lists")
        for _, s in ipairs(r.stages[1].services) do
            local want = 0.5 * tonumber(s.service:sub(2))
            -- the 50 ms backoff cap and the 10 ms probe
            assert.is_true(s.time_to_healthy >= want and s.time_to_healthy <= want + 0.07,
                s.service .. " healthy after " .. s.time_to_healthy .. " (listening at " .. want .. ")")
        end
    end)

    it("learns an unpinned host port from one inspect", function()
        local w = t.world{ services = { { name = "u", image = IMG, ports = { "127.0.0.1::80/tcp" } } },
                           images = { IMG }, health = { u = { after = 2 } } }
        local r = w:run(function(agent)
            return boot.run(agent, { { name = "f", services = { "u" } } }, {})
        end)
        assert.is_true(r.healthy)
        assert.equal(1, count_ops(w, "inspect"))
        local hp = w.runtime.container("u").ports[1].host_port
        for _, p in ipairs(w.probe_log) do assert.equal(hp, p.port) end
    end)

    it("asks whether a container still runs only while probes keep failing, one list for all", function()
        local services, names = {}, {}
        for i = 1, 6 do
            services[i] = svc("n" .. i, i)
            names[i] = "n" .. i
        end
        local w = t.world{ services = services, images = { IMG }, health_default = "never" }
        local r = w:run(function(agent)
            return boot.run(agent, { { name = "f", services = { "x" } },
                                     { name = "late", services = names, timeout = 30 } }, {})
        end)
        assert.is_false(r.stages[2].healthy)
        assert.equal(0, count_ops(w, "inspect"))
        -- 6 loops over 30 s, checking every second from the first: about 30 lists, not 6 x 30.
        local lists = count_ops(w, "list")
        assert.is_true(lists >= 20 and lists <= 35, lists .. " lists")
    end)

    it("backs off to seconds only in the foundation's retry after its timeout", function()
        local w = t.world{ services = { svc("db", 1) }, images = { IMG }, health = { db = "never" } }
        w:run(function(agent)
            return boot.run(agent, { { name = "f", services = { "db" }, timeout = 10 } }, {})
        end, { cancel_after = 610 })
        local early, late = 0, 0
        for _, p in ipairs(w.probe_log) do
            if p.time < 10 then early = early + 1 elseif p.time >= 10 then late = late + 1 end
        end
        -- Within the timeout: every 10-50 ms (about 25 per second).
        assert.is_true(early > 150, early .. " probes in the first 10 s")
        -- After it: 0.25 s growing to 5 s, full jitter (about one per 2.5 s).
        assert.is_true(late > 100 and late < 600, late .. " probes in the next 600 s")
        assert.is_true(count_ops(w, "list") < 200, count_ops(w, "list") .. " lists")
    end)

    it("notices a container that died during a later stage and restarts it", function()
        local w = t.world{ services = { svc("db", 1), svc("app", 2) }, images = { IMG },
                           health = { app = { after = 10 } } }
        w.sched.spawn(function()
            w.sched.sleep(3)
            w.runtime.kill("app", 1)
        end)
        local r = w:run(function(agent)
            return boot.run(agent, { { name = "f", services = { "db" } },
                                     { name = "apps", services = { "app" }, timeout = 40 } }, {})
        end)
        assert.is_true(r.healthy)
        local app = r.stages[2].services[1]
        assert.equal(1, app.restarts)
        -- Died at 3 s, seen within ~1 s, healthy 10 s after its restart.
        assert.is_true(app.time_to_healthy >= 13 and app.time_to_healthy < 14.5, "after " .. app.time_to_healthy)
    end)
end)

describe("seed-compatible boot example", function()
    local seed = dofile(root .. "policies/examples/seed-compatible/boot.lua")

    it("recovers every service at every stage and polls one service after another", function()
        local w = t.world{
            services = { svc("db", 1), svc("web", 2), svc("other", 3) },
            images = { IMG },
            health = { db = { after = 3 }, web = { after = 1 } },
        }
        local stages = { { name = "f", services = { "db" }, timeout = 30 },
                         { name = "apps", services = { "web" }, timeout = 30 } }
        local r = w:run(function(agent) return seed.run(agent, stages, {}) end)
        assert.is_true(r.healthy)
        -- The first stage already started "web" and "other" (the original's behaviour).
        assert.same({ "run db", "run other", "run web" }, run_ops(w))
        -- Fixed 2 s poll: db (healthy at 3 s) is seen at 4 s.
        local tth = r.stages[1].services[1].time_to_healthy
        assert.is_true(tth >= 4 and tth < 4.5, "time to healthy " .. tth)
    end)
end)
