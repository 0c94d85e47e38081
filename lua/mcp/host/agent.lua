-- mcp.host.agent: builds the real `agent` capability object (docs/LUA_API.md)
-- from the C primitives of mcp.core. Policies reach the world only through it.
local core = require("mcp.core")

local M = {}

-- agent.task.all(handles, timeout): waits for every handle within one deadline.
local function wait_all(handles, timeout)
    local deadline = timeout and (core.clock.now() + timeout)
    local results = {}
    for i, h in ipairs(handles) do
        local left = deadline and math.max(0, deadline - core.clock.now())
        results[i] = table.pack(core.task.wait(h, left))
    end
    return results
end

local function read_only_copy(t)
    local copy = {}
    for k, v in pairs(t) do
        copy[k] = type(v) == "table" and read_only_copy(v) or v
    end
    return copy
end

--- Builds the runtime named by the config: podman (C, on the event loop) or
--- the in-memory fake (pure Lua, on the real clock). Dry runs wrap it so
--- mutating calls are printed, not done.
local function build_runtime(config, print_line)
    local runtime
    if config.container_runtime == "fake" then
        runtime = require("mcp.fake_runtime").new {
            now = core.clock.now, sleep = core.clock.sleep, wallclock = core.clock.wallclock,
            task = { spawn = core.task.spawn, wait = core.task.wait, cancel = core.task.cancel },
            any_image = true,
        }
    else
        runtime = core.podman
    end
    if config.dry_run then
        runtime = require("mcp.dryrun").wrap(runtime, { print = print_line })
    end
    return runtime
end

--- Returns a fresh agent. opts.print(line) receives dry-run lines (default stdout).
function M.build(opts)
    opts = opts or {}
    local config = read_only_copy(core.config)
    local agent = {
        config = config,
        log = core.log,
        clock = { now = core.clock.now, sleep = core.clock.sleep, wallclock = core.clock.wallclock },
        task = {
            spawn = core.task.spawn,
            wait = core.task.wait,
            cancel = core.task.cancel,
            status = core.task.status,
            all = wait_all,
        },
        registry = core.registry,
        runtime = build_runtime(config, opts.print),
        probe = core.probe,
        http = core.http, -- webhooks from policies (agent.http.request)
        version = core.version,
    }
    -- mc-proxy and Metacrypt only when configured: policies test for them
    local mcproxy, metacrypt = config.mcproxy or {}, config.metacrypt or {}
    if mcproxy.socket and mcproxy.socket ~= "" then agent.proxy = core.proxy end
    if metacrypt.server_url and metacrypt.server_url ~= "" then agent.certs = core.certs end
    -- a dry run does nothing to the world, whatever the area (SPEC §2)
    if config.dry_run then require("mcp.dryrun").wrap_agent(agent, { print = opts.print }) end
    return agent
end

return M
