-- mcp.host.runner: `mcp-agent test` (SPEC §11). Runs the operator's policy
-- specs with busted under Lua 5.4 as a child (argv, no shell), with the
-- agent's own lua/ on LUA_PATH and MCP_POLICY_DIR = [policy] dir, so
-- `require "mcp.testing"` and `require "policy.NAME"` resolve as in the
-- daemon (mcp.policy_path); `--init DIR` writes starter specs that pass.
local M = {}

local OK, GOAL, USAGE = 0, 1, 2

-- A whole spec run may be slow, never endless.
M.TIMEOUT = 1800

local function complain(fmt, ...)
    io.stderr:write("mcp-agent: ", string.format(fmt, ...), "\n")
end

--- path exists and can be opened (a file, or a directory with "/." added).
local function is_file(path)
    local f = io.open(path, "r")
    if not f then return false end
    f:close()
    return true
end

--- The first PATH entry holding an executable `name`, or nil.
function M.which(name)
    for dir in (os.getenv("PATH") or ""):gmatch("[^:]+") do
        local path = dir .. "/" .. name
        if is_file(path) then return path end
    end
    return nil
end

--- The folder holding path ("/a/b" for "/a/b/c", "." for "c").
local function parent(path)
    local p = path:gsub("/+$", "")
    return p:match("^(.*)/[^/]*$") or "."
end

--- The spec/ folder beside [policy] dir (SPEC §11), or nil when none is set.
function M.default_spec_dir(config)
    local dir = config.policy_dir
    if not dir or dir == "" then return nil end
    return parent(dir) .. "/spec"
end

--- The environment a spec run gets: the agent's library first on the path.
function M.environment(paths, config)
    local lua = paths.lua
    local env = {
        LUA_PATH = lua .. "/?.lua;" .. lua .. "/?/init.lua;;",
        MCP_BUILTIN_POLICY_DIR = paths.builtin_policies,
    }
    if config.policy_dir and config.policy_dir ~= "" then env.MCP_POLICY_DIR = config.policy_dir end
    return env
end

function M.test(agent, cmd)
    if cmd.flags.init then return M.init(agent, cmd.flags.init) end
    local paths = require("mcp.core").paths
    local busted = M.which("busted")
    if not busted then
        complain("test: busted not found in PATH; install it (Debian: apt-get install lua-busted)")
        return USAGE
    end
    local lua = M.which("lua5.4")
    if not lua then
        complain("test: lua5.4 not found in PATH; install it (Debian: apt-get install lua5.4)")
        return USAGE
    end
    local targets = cmd.args
    if #targets == 0 then
        local dir = M.default_spec_dir(agent.config)
        if not dir then
            complain("test: no [policy] dir in %s, so no default spec/ folder; name the specs to run",
                agent.config.config_path or "the built-in defaults")
            return USAGE
        end
        targets = { dir }
    end
    for _, t in ipairs(targets) do
        if not is_file(t) and not is_file(t .. "/.") then
            complain("test: %s: no such file or directory", t)
            return USAGE
        end
    end
    -- busted re-executes itself through sh when given --lua: run it with lua5.4 instead
    local argv = { lua, busted, "--pattern=_spec" }
    if cmd.flags.filter then argv[#argv + 1] = "--filter=" .. cmd.flags.filter end
    argv[#argv + 1] = "--"
    for _, t in ipairs(targets) do argv[#argv + 1] = t end
    io.stdout:flush()
    local code, reason, detail = require("mcp.core").exec.run(argv,
        { env = M.environment(paths, agent.config), timeout = M.TIMEOUT })
    if not code then
        complain("test: %s (%s)", tostring(detail), tostring(reason))
        return GOAL
    end
    return code == 0 and OK or GOAL
end

-- --init: starter specs --------------------------------------------------------

-- What a starter spec checks of each built-in policy kind; any other policy
-- is checked to load as a table.
local BODIES = {
    recover = [[
    it("recreates a container that is missing", function()
        local w = t.world{ services = { { name = "app", image = IMG } }, images = { IMG } }
        local report = w:run(function(agent) return policy.run(agent, {}) end)
        assert.equal(1, #report.recovered)
        assert.equal("running", w.runtime.container("app").state)
    end)

    it("skips a component whose image is missing", function()
        local w = t.world{ services = { { name = "app", image = IMG } }, images = {} }
        local report = w:run(function(agent) return policy.run(agent, {}) end)
        assert.equal(1, #report.skipped)
        assert.is_nil(w.runtime.container("app"))
    end)
]],
    boot = [[
    it("brings a stage up and waits until it is healthy", function()
        local w = t.world{
            services = { { name = "app", image = IMG, ports = { "127.0.0.1:18080:80/tcp" } } },
            images = { IMG },
            health = { app = { after = 2 } }, -- healthy 2 virtual seconds after start
        }
        local stages = { { name = "foundation", services = { "app" }, timeout = 30, health = "tcp" } }
        local report = w:run(function(agent) return policy.run(agent, stages, {}) end)
        assert.is_true(report.healthy)
        assert.is_true(w:now() >= 2)
    end)
]],
    supervise = [[
    it("gives a delay in seconds (or false) for a component that died", function()
        local info = { service = "app", component = "app", container = "app", exit_code = 1,
                       restarts = 3, running_for = 5, reason = "died" }
        local delay = policy.on_exit({}, { name = "app" }, info)
        assert.is_true(delay == false or (type(delay) == "number" and delay >= 0))
    end)
]],
    backoff = [[
    it("hands out delays within the cap", function()
        local b = policy.new{ base = 0.5, cap = 4, random = policy.seeded(1) }
        for _ = 1, 10 do
            local d = b.next()
            assert.is_true(d >= 0 and d <= 4)
        end
    end)
]],
}

local TEMPLATE = [[
-- Starter spec for policy.%s, written by `mcp-agent test --init`.
-- Run it with `mcp-agent test`; the fake world is documented in docs/LUA_API.md
-- (mcp.testing).
local t = require("mcp.testing")
local policy = require("policy.%s")

local IMG = "localhost/app:1" -- luacheck: ignore 211

describe("policy.%s", function()
    it("loads as a table of functions", function()
        assert.is_table(policy)
        assert.is_table(t)
    end)
%s
end)
]]

--- The starter spec text for policy `name`.
function M.starter(name)
    local body = BODIES[name] and ("\n" .. BODIES[name]) or ""
    return string.format(TEMPLATE, name, name, name, body)
end

--- The policies of dir: its *.lua files (the built-in four when it has none).
local function policy_names(dir)
    local names = {}
    local listing = require("mcp.host.policies")
    for _, n in ipairs(listing.NAMES) do
        if is_file(dir .. "/" .. n .. ".lua") then names[#names + 1] = n end
    end
    if #names == 0 then
        for _, n in ipairs(listing.NAMES) do names[#names + 1] = n end
    end
    return names
end

--- Writes DIR/../spec/NAME_spec.lua for each policy of DIR (an existing
--- spec is kept). -> exit code
function M.init(agent, dir)
    if not is_file(dir .. "/.") then
        complain("test --init: %s: not a directory", dir)
        return USAGE
    end
    local spec_dir = parent(dir) .. "/spec"
    local made, err = require("mcp.core").exec.run({ "mkdir", "-p", "--", spec_dir }, { timeout = 10 })
    if made ~= 0 then
        complain("test --init: cannot create %s: %s", spec_dir, tostring(err or made))
        return USAGE
    end
    for _, name in ipairs(policy_names(dir)) do
        local path = spec_dir .. "/" .. name .. "_spec.lua"
        if is_file(path) then
            io.stdout:write(path, ": exists, kept\n")
        else
            local f, ferr = io.open(path, "w")
            if not f then complain("test --init: %s", ferr); return USAGE end
            local ok, werr = f:write(M.starter(name))
            f:close()
            if not ok then complain("test --init: %s: %s", path, tostring(werr)); return USAGE end
            io.stdout:write(path, "\n")
        end
    end
    agent.log.info("starter specs written; run them with `mcp-agent test`", { dir = spec_dir })
    return OK
end

return M
