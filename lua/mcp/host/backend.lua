-- mcp.host.backend: where the CLI's operations run. With a daemon answering
-- on [agent] socket, they go to it over gRPC, so the daemon stays the single
-- writer of the registry; otherwise they run here, on the registry directly.
-- Both answer in the API's message shapes (see mcp.host.ops).
local core = require("mcp.core")
local ops = require("mcp.host.ops")
local policies = require("mcp.host.policies")

local M = {}

local SERVICE = "/mcp.agent.v1.AgentService/"
local codes = core.api.codes
local KINDS = { [codes.INVALID_ARGUMENT] = "invalid", [codes.NOT_FOUND] = "not found",
                [codes.UNAVAILABLE] = "unavailable" }

local function local_backend(agent)
    local b = { remote = false }
    function b.deploy(text, source, opts) return ops.deploy(agent, text, source, opts) end
    function b.service_action(verb, service, component)
        return ops.service_action(agent, verb, service, component)
    end
    function b.remove(service) return ops.remove(agent, service) end
    function b.list() return ops.list(agent) end
    function b.status(name) return ops.status(agent, name) end
    function b.status_all() return ops.status_all(agent) end
    function b.recover(dry_run)
        local recover, err = policies.get("recover")
        if not recover then return nil, "policy", err end
        return ops.recover(agent, recover, dry_run)
    end
    return b
end

local function remote_backend(socket)
    local b = { remote = true, socket = socket }
    local function call(method, req, timeout)
        local resp, reason, message, status = core.api.call(socket, SERVICE .. method, req, timeout or 600)
        if resp then return resp end
        local text = (message and message ~= "") and message or tostring(reason)
        return nil, KINDS[status] or "failed", text
    end
    function b.deploy(text, source, opts)
        return call("Deploy", { service_toml = text, source = source,
                                allow_unknown = opts and opts.allow_unknown or false })
    end
    function b.service_action(verb, service, component)
        local method = ({ start = "StartService", stop = "StopService", restart = "RestartService" })[verb]
        return call(method, { service = service, component = component or "" })
    end
    function b.remove(service) return call("RemoveService", { service = service }) end
    function b.list() return call("ListServices", {}) end
    function b.status(name) return call("GetServiceStatus", { service = name }) end
    function b.status_all()
        local list, kind, msg = call("ListServices", {})
        if not list then return nil, kind, msg end
        local out = {}
        for i, s in ipairs(list.services) do
            local st, k, m = call("GetServiceStatus", { service = s.name })
            if not st then return nil, k, m end
            out[i] = st
        end
        return out, list.runtime_error ~= "" and list.runtime_error or nil
    end
    function b.boot_status() return call("BootStatus", {}, 10) end
    function b.recover(dry_run)
        local report, kind, msg = call("Recover", { dry_run = dry_run })
        if not report then return nil, kind, msg end
        -- the report's shape, with what proto3 drops put back
        for _, list in ipairs({ "recovered", "already_running", "skipped", "failed", "planned" }) do
            for _, e in ipairs(report[list]) do
                if e.reason == "" then e.reason = nil end
                if e.action == "" then e.action = nil end
            end
        end
        return report
    end
    return b
end

--- The daemon's backend when one answers on the configured socket, else the
--- local one. A daemon that is there but not answering is an error, not a
--- reason to write behind its back.
function M.connect(agent)
    local socket = agent.config.socket
    if not socket or socket == "" or os.getenv("MCP_AGENT_LOCAL") == "1" then
        return local_backend(agent)
    end
    -- No socket file, no daemon: say so without loading the gRPC client.
    -- (Opening a unix socket as a file fails with ENXIO; a missing one with ENOENT.)
    local f, _, code = io.open(socket, "r")
    if f then f:close() end
    if code == 2 then return local_backend(agent) end
    local resp, reason = core.api.call(socket, SERVICE .. "NodeStatus", {}, 5)
    if resp then return remote_backend(socket) end
    if reason == "refused" or reason == "failed" then return local_backend(agent) end
    return nil, string.format("a daemon seems to hold %s but does not answer (%s); "
        .. "set MCP_AGENT_LOCAL=1 to work on the registry directly", socket, tostring(reason))
end

M.local_backend = local_backend

return M
