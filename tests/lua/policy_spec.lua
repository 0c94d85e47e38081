-- require "policy.NAME" outside the agent (mcp.policy_path), as the daemon
-- resolves it: operator dir first, policy.builtin.NAME for the built-in one.
local t = require("mcp.testing")
local policy_path = require("mcp.policy_path")

local root = debug.getinfo(1, "S").source:match("^@(.-)tests/lua/[^/]*$") or "./"

-- Loads policy.boot with `dir` as the operator's policy dir, afresh.
local function load_boot(dir)
    local saved = policy_path.operator_dir
    policy_path.operator_dir = dir
    package.loaded["policy.boot"], package.loaded["policy.builtin.boot"] = nil, nil
    local ok, mod = pcall(require, "policy.boot")
    policy_path.operator_dir = saved
    package.loaded["policy.boot"], package.loaded["policy.builtin.boot"] = nil, nil
    return ok, mod
end

-- Probes made until a service that answers 0.95 s after it starts is healthy.
local function probes_until_healthy(boot)
    local w = t.world{
        services = { { name = "db", image = "img:1", ports = { "127.0.0.1:15432:5432" } } },
        images = { "img:1" },
        health = { db = { after = 0.95 } },
    }
    local r = w:run(function(agent) return boot.run(agent, { { name = "f", services = { "db" } } }, {}) end)
    assert.is_true(r.healthy)
    return #w.probe_log
end

describe("policy namespace", function()
    it("wrapping policy.builtin.boot changes only the setting it changes", function()
        local ok, builtin = load_boot(nil)
        assert.is_true(ok, tostring(builtin))
        local ok2, wrapped = load_boot(root .. "policies/examples/wrap-builtin")
        assert.is_true(ok2, tostring(wrapped))
        assert.same({ base = 0.1, cap = 1, jitter = "none" }, wrapped.PROBE_BACKOFF)
        assert.equal(builtin.START_PARALLEL, wrapped.START_PARALLEL)
        local fast, slow = probes_until_healthy(builtin), probes_until_healthy(wrapped)
        -- 10-50 ms apart for 0.95 s against 0.1, 0.2, 0.4, 0.8 s apart
        assert.is_true(fast > 15, "built-in probes: " .. fast)
        assert.equal(5, slow)
    end)

    it("a policy that requires itself is an error naming its file", function()
        local dir = os.tmpname()
        os.remove(dir)
        assert.is_true(os.execute("mkdir -p " .. dir) == true)
        local f = assert(io.open(dir .. "/boot.lua", "w"))
        f:write('return require "policy.boot"\n')
        f:close()
        local ok, err = load_boot(dir)
        os.remove(dir .. "/boot.lua")
        os.remove(dir)
        assert.is_false(ok)
        assert.truthy(tostring(err):find(dir .. "/boot.lua", 1, true), err)
        assert.truthy(tostring(err):find("requires itself", 1, true), err)
    end)

    it("bare names are not policies", function()
        assert.is_false((pcall(require, "boot")))
        assert.is_table(require "policy.backoff")
    end)
end)
