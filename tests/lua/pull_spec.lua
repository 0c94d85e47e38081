-- deploy pulls a missing image per [agent] pull; recover and the supervisor
-- never pull (SPEC §5, issue 13); deploy --dry-run previews touch nothing.
local root = debug.getinfo(1, "S").source:match("^@(.-)tests/lua/[^/]*$") or "./"
package.path = root .. "lua/?.lua;" .. root .. "lua/?/init.lua;" .. package.path

local t = require("mcp.testing")
local ops = require("mcp.host.ops")
local preview = require("mcp.host.preview")
local recover = require("policy.recover")

local IMG = "localhost/app:1"

-- Mutating calls as "op" (or "op!" when it failed): a run without the image fails.
local function ops_of(w)
    local out = {}
    for _, m in ipairs(w.runtime.mutations()) do out[#out + 1] = m.op .. (m.ok and "" or "!") end
    return table.concat(out, " ")
end

-- A world whose fake registry of images holds IMG, none of it pulled yet.
local function world(config)
    local w = t.world{ services = { { name = "app", image = IMG } }, images = {}, config = config }
    w.runtime.publish_image(IMG)
    -- the fake registry stores nothing: deploy returns the service as it is
    w.registry.deploy = function(name) return w.registry.service(name) end
    return w
end

local function deploy(w)
    return w:run(function(agent) return ops.deploy(agent, "app", "app.toml") end)
end

describe("deploy pulls", function()
    it("an image that is not present, then runs it", function()
        local w = world()
        local resp = deploy(w)
        assert.is_true(resp.ok)
        assert.equal("run! pull run", ops_of(w))
        assert.equal("running", w.runtime.container("app").state)
        assert.is_true(w:logged("info", "pulling image " .. IMG))
        assert.is_true(w:logged("info", "pulled image " .. IMG))
    end)

    it("nothing when the image is present", function()
        local w = world()
        w.runtime.add_image(IMG)
        assert.is_true(deploy(w).ok)
        assert.equal("run", ops_of(w))
    end)

    it("nothing with pull = \"never\", and says why it did not run", function()
        local w = world({ pull = "never" })
        local resp = deploy(w)
        assert.is_false(resp.ok)
        assert.equal("run!", ops_of(w))
        assert.is_false(resp.results[1].ok)
        assert.matches('pull = "never"', resp.results[1].error, 1, true)
    end)

    it("and a pull that fails is a clear failure naming the image and the reason", function()
        local w = world()
        w.runtime.fail_next("pull", "registry unreachable", "dial tcp 127.0.0.1:5000: connection refused")
        local resp = deploy(w)
        assert.is_false(resp.ok)
        assert.equal("run! pull!", ops_of(w))
        assert.matches("cannot pull " .. IMG, resp.results[1].error, 1, true)
        assert.matches("registry unreachable", resp.results[1].error, 1, true)
        assert.is_nil(w.runtime.container("app"))
    end)
end)

describe("recover never pulls", function()
    it("and skips the component whose image is missing", function()
        local w = world()
        local r = w:run(function(agent) return recover.run(agent, {}) end)
        assert.equal(1, #r.skipped)
        assert.equal("run!", ops_of(w))
        assert.is_nil(w.runtime.container("app"))
    end)
end)

describe("deploy --dry-run preview", function()
    local function svc(image, extra)
        local s = t.service({ name = "app", components = { { name = "app", image = image } } })
        for k, v in pairs(extra or {}) do s.components[1][k] = v end
        return s
    end

    it("says new for a service the registry does not have, and what deploy would do", function()
        local w = t.world{ services = {}, images = {} }
        local lines = w:run(function(agent) return preview.lines(agent, svc(IMG)) end)
        assert.same({ "service app: new", "  component app: new",
                      "    container: would pull " .. IMG .. ", then would run app from " .. IMG }, lines)
        assert.equal("", ops_of(w))
    end)

    it("lists changed fields old → new, and unchanged components", function()
        local w = t.world{ services = { { name = "app", components = {
            { name = "app", image = IMG, env = { "A=1" } }, { name = "db", image = IMG } } } },
            images = { IMG, "localhost/app:2" }, containers = { { name = "app", image = IMG, state = "running" } } }
        local new = t.service({ name = "app", components = {
            { name = "app", image = "localhost/app:2", env = { "A=2" } }, { name = "db", image = IMG } } })
        local lines = w:run(function(agent) return preview.lines(agent, new) end)
        assert.same({
            "service app: in the registry, active unchanged",
            "  component app: changed",
            '    image: "localhost/app:1" → "localhost/app:2"',
            '    env: ["A=1"] → ["A=2"]',
            "    container: would recreate app (now running) from localhost/app:2",
            "  component db: unchanged",
            "    container: would run app-db from " .. IMG,
        }, lines)
        assert.equal("", ops_of(w))
    end)

    it("names components the new definition drops", function()
        local w = t.world{ services = { { name = "app", components = {
            { name = "app", image = IMG }, { name = "db", image = IMG } } } }, images = { IMG } }
        local lines = w:run(function(agent) return preview.lines(agent, svc(IMG)) end)
        assert.equal("  component db: removed", lines[#lines - 1])
        assert.equal("    container: would remove app-db", lines[#lines])
    end)
end)
