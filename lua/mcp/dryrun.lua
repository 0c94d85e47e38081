-- mcp.dryrun: wraps an agent.runtime so that mutating calls (run, start,
-- stop, remove, pull) are reported as what would be done and not done; read-only
-- calls (list, inspect, image_exists, events) pass through.
--
--   local rt = require("mcp.dryrun").wrap(agent.runtime, { print = print })
--   rt.run(spec)   -- prints "would run metacrypt-api from localhost/x:1 ...", returns "dry-run"
--   rt.actions     -- { {op="run", name=..., text=...}, ... }

local sandbox = require("mcp.sandbox")

local M = {}

local function join(list)
    return table.concat(list or {}, " ")
end

--- One line describing what run(spec) would do.
function M.describe_run(spec)
    local parts = { string.format("would run %s from %s", tostring(spec.name), tostring(spec.image)) }
    if spec.ports and #spec.ports > 0 then parts[#parts + 1] = "ports " .. join(spec.ports) end
    if spec.network then parts[#parts + 1] = "network " .. spec.network end
    if spec.user then parts[#parts + 1] = "user " .. spec.user end
    if spec.restart then parts[#parts + 1] = "restart " .. spec.restart end
    if spec.volumes and #spec.volumes > 0 then parts[#parts + 1] = "volumes " .. join(spec.volumes) end
    if spec.env and #spec.env > 0 then parts[#parts + 1] = "env " .. join(spec.env) end
    if spec.cmd and #spec.cmd > 0 then parts[#parts + 1] = "cmd " .. join(spec.cmd) end
    if type(spec.labels) == "table" and next(spec.labels) then
        local kv = {}
        for k, v in pairs(spec.labels) do kv[#kv + 1] = tostring(k) .. "=" .. tostring(v) end
        table.sort(kv)
        parts[#parts + 1] = "labels " .. join(kv)
    end
    return table.concat(parts, ", ")
end

--- Returns a runtime with the same functions as `runtime`. opts.print(line)
--- receives each "would ..." line (default: io.stdout); `.actions` lists them.
function M.wrap(runtime, opts)
    if type(runtime) ~= "table" then error("dryrun.wrap: expected a runtime table", 2) end
    opts = opts or {}
    local out = opts.print or function(line) io.stdout:write(line, "\n") end
    local w = { actions = {}, dry_run = true }

    local function act(op, name, text)
        w.actions[#w.actions + 1] = { op = op, name = name, text = text }
        out(text)
    end

    function w.run(spec)
        if type(spec) ~= "table" then error("run: spec must be a table", 2) end
        act("run", spec.name, M.describe_run(spec))
        return "dry-run"
    end
    function w.start(name)
        act("start", name, "would start " .. tostring(name))
        return true
    end
    function w.stop(name, timeout_s)
        act("stop", name, string.format("would stop %s (timeout %ss)", tostring(name), tostring(timeout_s or 10)))
        return true
    end
    function w.remove(name)
        act("remove", name, "would remove " .. tostring(name))
        return true
    end
    function w.pull(image)
        act("pull", image, "would pull " .. tostring(image))
        return true, ""
    end
    -- Everything else (list, inspect, image_exists, events, test controls) passes through.
    return setmetatable(w, { __index = runtime })
end

-- The mutating calls of every other area (SPEC §2 eval --dry-run): each
-- prints what it would do and answers as if it had.
local MUTATING = {
    registry = { deploy = "would store the service definition from %s",
                 set_desired = "would set the desired state of %s", set_active = "would set %s active/inactive",
                 delete = "would remove %s from the registry", event = "would record an event for %s",
                 set_supervision = "would store supervisor state of %s",
                 clear_supervision = "would clear supervisor state of %s",
                 snapshot = "would write a registry snapshot to %s" },
    proxy = { add_route = "would add a route to mc-proxy (%s)", remove_route = "would remove a route (%s)" },
    certs = { ensure = "would ensure a TLS certificate for %s" },
    http = { request = "would send an HTTP request (%s)" },
}

-- What a faked call answers: registry reads stay real.
local function fake_answer(area, name, args)
    if area == "registry" and name == "deploy" then return nil, "dry-run", "not stored in a dry run" end
    if area == "certs" then return nil, "dry-run", "no certificate in a dry run" end
    if area == "http" then return nil, "dry-run", "not sent in a dry run" end
    if area == "registry" and name == "set_desired" then return 0 end
    return true, args
end

local function describe_arg(v)
    if type(v) == "table" then return tostring(v.url or v.hostname or v.name or "…") end
    return tostring(v)
end

--- Wraps every mutating primitive of agent (runtime, registry, proxy,
--- certs, http) so that it prints and does nothing; reads pass through.
--- Returns the same agent, changed in place.
function M.wrap_agent(agent, opts)
    opts = opts or {}
    local out = opts.print or function(line) io.stdout:write(line, "\n") end
    if not (agent.runtime and agent.runtime.dry_run) then agent.runtime = M.wrap(agent.runtime, { print = out }) end
    for area, calls in pairs(MUTATING) do
        local real = agent[area]
        if type(real) == "table" then
            local w = setmetatable({}, { __index = real })
            for name, text in pairs(calls) do
                if real[name] then
                    w[name] = function(first, ...)
                        out(string.format(text, describe_arg(first)))
                        return fake_answer(area, name, first, ...)
                    end
                end
            end
            agent[area] = w
        end
    end
    agent.dry_run = true
    return agent
end

--- An environment for an ad-hoc script in a dry run: the globals, less what
--- reaches past the wrapped agent (the raw C core, the debug library,
--- loading bytecode or another environment's globals).
function M.script_env(agent, script_args)
    local env = {}
    for k, v in pairs(_G) do env[k] = v end
    env.agent, env.arg = agent, script_args
    env.require = sandbox.guarded_require(function(name)
        return "eval --dry-run: " .. name .. " is not reachable in a dry run (use `agent`)"
    end)
    env.package, env.debug = nil, nil
    return sandbox.confine_loaders(env)
end

return M
