-- mcp.spec, mcp.dryrun, mcp.report and policies/backoff.lua.
local root = debug.getinfo(1, "S").source:match("^@(.-)tests/lua/[^/]*$") or "./"
package.path = root .. "lua/?.lua;" .. root .. "lua/?/init.lua;" .. package.path

local spec = require("mcp.spec")
local dryrun = require("mcp.dryrun")
local report = require("mcp.report")
local backoff = require("policy.backoff")
local fake_runtime = require("mcp.fake_runtime")
local cjson = require("cjson")

describe("mcp.spec", function()
    it("names containers service-component, or service when they share a name", function()
        assert.equal("metacrypt-api", spec.container_name("metacrypt", "api"))
        assert.equal("mcias", spec.container_name("mcias", "mcias"))
        assert.equal("mcias", spec.container_name("mcias", nil))
        assert.has_error(function() spec.container_name(nil, "x") end)
    end)

    it("copies the stored fields and adds route ports and PORT env", function()
        local svc = { name = "metacrypt" }
        local comp = {
            name = "api", image = "localhost/metacrypt:v1", network = "mcpnet", user = "0:0",
            restart = "unless-stopped", ports = { "127.0.0.1:18443:8443/tcp" },
            volumes = { "/srv/m:/srv/m" }, cmd = { "server", "--config", "x.toml" },
            env = { "LOG_LEVEL=info", "PORT=1" },
            routes = {
                { name = "rest", port = 8443, mode = "l7", hostname = "m.example", host_port = 10001 },
                { name = "web-ui", port = 0, mode = "l4", host_port = 10002 },
                { name = "pending", port = 9000 },  -- no host port yet
            },
        }
        local s = spec.container(svc, comp)
        assert.equal("metacrypt-api", s.name)
        assert.equal("localhost/metacrypt:v1", s.image)
        assert.equal("mcpnet", s.network)
        assert.equal("0:0", s.user)
        assert.equal("unless-stopped", s.restart)
        assert.same({ "127.0.0.1:18443:8443/tcp", "127.0.0.1:10001:8443/tcp", "127.0.0.1:10002:10002/tcp" },
            s.ports)
        assert.same({ "LOG_LEVEL=info", "PORT=8443", "PORT_REST=8443", "PORT_WEB_UI=10002",
                      "PORT_PENDING=9000" }, s.env)
        assert.same({ "/srv/m:/srv/m" }, s.volumes)
        assert.same({ "server", "--config", "x.toml" }, s.cmd)
        -- The component is not modified.
        assert.same({ "127.0.0.1:18443:8443/tcp" }, comp.ports)
    end)

    it("maps a route without a container port host:host and does not duplicate ports", function()
        local s = spec.container({ name = "w" }, { name = "w", image = "i",
            ports = { "127.0.0.1:10005:10005/tcp" }, routes = { { name = "http", host_port = 10005 } } })
        assert.equal("w", s.name)
        assert.same({ "127.0.0.1:10005:10005/tcp" }, s.ports)
        assert.same({ "PORT=10005", "PORT_HTTP=10005" }, s.env)
    end)

    it("uses the component's explicit container name and handles empty fields", function()
        local s = spec.container({ name = "a" }, { name = "b", container = "custom", image = "i" })
        assert.equal("custom", s.name)
        assert.same({}, s.ports)
        assert.same({}, s.env)
        assert.has_error(function() spec.container("a", {}) end)
    end)
end)

describe("mcp.dryrun", function()
    it("prints mutating calls instead of doing them and passes reads through", function()
        local rt = fake_runtime.new{ images = { "localhost/x:1" },
            containers = { { name = "old", image = "localhost/x:1", state = "exited" } } }
        local lines = {}
        local d = dryrun.wrap(rt, { print = function(l) lines[#lines + 1] = l end })
        assert.equal("dry-run", d.run{ name = "metacrypt-api", image = "localhost/x:1",
                                       ports = { "127.0.0.1:1:2/tcp" }, env = { "A=1" } })
        assert.is_true(d.remove("old"))
        assert.is_true(d.stop("old", 5))
        assert.is_true(d.start("old"))
        assert.equal("would run metacrypt-api from localhost/x:1, ports 127.0.0.1:1:2/tcp, env A=1", lines[1])
        assert.same({ "would remove old", "would stop old (timeout 5s)", "would start old" },
            { lines[2], lines[3], lines[4] })
        assert.equal(4, #d.actions)
        assert.equal("run", d.actions[1].op)
        -- Nothing happened in the real runtime.
        assert.same({}, rt.mutations())
        assert.equal("exited", rt.container("old").state)
        assert.is_nil(rt.container("metacrypt-api"))
        -- Reads pass through.
        assert.is_true(d.image_exists("localhost/x:1"))
        assert.equal("old", d.list()[1].name)
        assert.equal("exited", d.inspect("old").state)
        assert.has_error(function() d.run("nope") end)
    end)
end)

describe("mcp.report", function()
    local r = {
        recovered = { { service = "b", component = "b", container = "b" },
                      { service = "a", component = "api", container = "a-api" } },
        already_running = { { service = "c", component = "c", container = "c" } },
        skipped = { { service = "d", component = "d", container = "d", reason = "no such image" } },
        failed = {},
        planned = {},
        warnings = { "d: image localhost/d:1 not found, skipped" },
    }

    it("renders one line per container, the warnings and the summary", function()
        local text = report.text(r)
        local lines = {}
        for l in text:gmatch("[^\n]+") do lines[#lines + 1] = l end
        assert.equal(6, #lines)
        assert.is_nil(text:find("\n$"), "the caller ends the last line")
        assert.matches("^recovered%s+a/api %(a%-api%)$", lines[1])
        assert.matches("^recovered%s+b %(b%)$", lines[2])
        assert.matches("^already running%s+c %(c%)$", lines[3])
        assert.matches("^skipped%s+d %(d%): no such image$", lines[4])
        assert.equal("warning: d: image localhost/d:1 not found, skipped", lines[5])
        assert.equal("recovered 2, already running 1, skipped 1, failed 0", lines[6])
        assert.equal(1, report.exit_code(r))
    end)

    it("shows the plan of a dry run", function()
        local text = report.text({ dry_run = true,
            planned = { { service = "x", component = "x", container = "x", action = "recreate" } } })
        assert.matches("would recreate%s+x %(x%)", text)
        assert.matches("recovered 0, already running 0, skipped 0, failed 0, planned 1", text)
        assert.equal(0, report.exit_code({ recovered = {} }))
    end)

    it("encodes JSON with empty arrays as [] and valid values", function()
        local json = report.json(r)
        assert.matches('"failed":%[%]', json)
        assert.matches('"planned":%[%]', json)
        local back = cjson.decode(json)
        assert.equal(2, #back.recovered)
        assert.equal("no such image", back.skipped[1].reason)
        assert.equal(2, back.summary.recovered)
        assert.is_false(back.dry_run)
        local empty = report.json({})
        assert.equal('{"recovered":[],"already_running":[],"skipped":[],"failed":[],"planned":[],'
            .. '"warnings":[],"dry_run":false,"summary":{"already_running":0,"failed":0,'
            .. '"planned":0,"recovered":0,"skipped":0}}', empty)
    end)

    it("escapes strings safely", function()
        local json = report.json({ failed = { { service = "s", component = "c", container = "s-c",
                                                reason = 'bad "quote"\nnewline' } } })
        assert.equal('bad "quote"\nnewline', cjson.decode(json).failed[1].reason)
    end)
end)

describe("mcp.health", function()
    local health = require("mcp.health")

    it("parses podman port specs", function()
        assert.same({ 18080, 8080, "tcp" }, { health.parse_port_spec("127.0.0.1:18080:8080/tcp") })
        assert.same({ 18080, 8080, "tcp" }, { health.parse_port_spec("18080:8080") })
        assert.same({ 53, 53, "udp" }, { health.parse_port_spec("53:53/UDP") })
        assert.same({ 9000, 80, "tcp" }, { health.parse_port_spec("[::1]:9000:80") })
        assert.same({ nil, 8080, "tcp" }, { health.parse_port_spec("127.0.0.1::8080") })
        assert.same({ nil, 8080, "tcp" }, { health.parse_port_spec("8080") })
        assert.is_nil(health.parse_port_spec(nil))
        assert.is_nil((health.parse_port_spec("8000-8010:8000-8010")))
    end)

    it("finds the host port a spec pins for a container port, else nil", function()
        local c = { ports = { "127.0.0.1:18443:8443/tcp", "127.0.0.1::9000", "53:53/udp" },
                    routes = { { name = "r", port = 7000, host_port = 10001 },
                               { name = "p", host_port = 10002 },
                               { name = "new", port = 7100 } } }
        assert.equal(18443, health.pinned_host_port(c, 8443))
        assert.is_nil(health.pinned_host_port(c, 9000))   -- podman picks it
        assert.is_nil(health.pinned_host_port(c, 53))     -- udp only
        assert.equal(10001, health.pinned_host_port(c, 7000))
        assert.equal(10002, health.pinned_host_port(c, 10002)) -- $PORT route, mapped host:host
        assert.is_nil(health.pinned_host_port(c, 7100))    -- no host port yet
        assert.is_nil(health.pinned_host_port(c, nil))
        assert.is_nil(health.pinned_host_port({}, 80))
        -- The first mapping of a port wins, as in the runtime's record.
        assert.equal(18443, health.pinned_host_port({ ports = { "127.0.0.1:18443:8443" },
            routes = { { name = "r", port = 8443, host_port = 10001 } } }, 8443))
    end)
end)

describe("backoff", function()
    it("keeps every delay within [0, cap] and grows exponentially without jitter", function()
        local b = backoff.new{ base = 1, cap = 10, jitter = "none" }
        local got = {}
        for i = 1, 7 do got[i] = b.next() end
        assert.same({ 1, 2, 4, 8, 10, 10, 10 }, got)
        b.reset()
        assert.equal(1, b.next())
    end)

    for _, jitter in ipairs({ "full", "equal", "decorrelated" }) do
        it("bounds " .. jitter .. " jitter", function()
            local b = backoff.new{ base = 0.5, cap = 8, jitter = jitter, random = backoff.seeded(42) }
            for i = 1, 1000 do
                local d = b.next()
                assert.is_true(d >= 0 and d <= 8, "delay " .. d .. " at " .. i)
                if jitter == "decorrelated" then assert.is_true(d >= 0.5) end
                if jitter == "full" and i <= 3 then assert.is_true(d <= 0.5 * 2 ^ (i - 1)) end
            end
        end)
    end

    it("is deterministic given a random function, and iterates with delays()", function()
        local function seq()
            local out = {}
            for d in backoff.delays{ base = 1, cap = 30, jitter = "decorrelated", tries = 6,
                                     random = backoff.seeded(3) } do
                out[#out + 1] = d
            end
            return out
        end
        local a, b = seq(), seq()
        assert.equal(6, #a)
        assert.same(a, b)
        local edge = backoff.new{ base = 2, cap = 4, jitter = "full", random = function() return 0.999999 end }
        for _ = 1, 5 do assert.is_true(edge.next() <= 4) end
    end)

    it("rejects bad options", function()
        assert.has_error(function() backoff.new{ base = -1 } end)
        assert.has_error(function() backoff.new{ base = 5, cap = 1 } end)
        assert.has_error(function() backoff.new{ jitter = "sometimes" } end)
        assert.has_error(function() backoff.new{ random = 3 } end)
    end)
end)
