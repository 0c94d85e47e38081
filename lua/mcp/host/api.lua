-- mcp.host.api: the daemon's gRPC handlers (proto/mcp/agent/v1/agent.proto
-- and grpc.health.v1). Each call runs as its own task: handler(request)
-- returns the response table, or nil, grpc_status, message.
local core = require("mcp.core")
local idle = require("mcp.host.idle")
local listing = require("mcp.host.listing")
local metrics = require("mcp.host.metrics")
local ops = require("mcp.host.ops")
local policies = require("mcp.host.policies")

local M = {}

local SVC = "/mcp.agent.v1.AgentService/"
local HEALTH = "/grpc.health.v1.Health/"

local codes = core.api.codes
local INVALID_ARGUMENT, NOT_FOUND, UNIMPLEMENTED = codes.INVALID_ARGUMENT, codes.NOT_FOUND, codes.UNIMPLEMENTED
local INTERNAL, UNAVAILABLE, OK = codes.INTERNAL, codes.UNAVAILABLE, codes.OK
local SERVING, NOT_SERVING = 1, 2

local STATUS_OF = { invalid = INVALID_ARGUMENT, ["not found"] = NOT_FOUND, unavailable = UNAVAILABLE,
                    busy = codes.ABORTED }

local MUTATING = {}
for _, m in ipairs({ "Deploy", "StartService", "StopService", "RestartService", "RemoveService", "Recover" }) do
    MUTATING[SVC .. m] = true
end

-- What a streaming handler returns once it has sent its messages.
local STREAMED = setmetatable({}, { __tostring = function() return "streamed" end })
M.WATCH_BACKLOG = 10000 -- past events WatchEvents sends at most

local function failure(kind, message)
    return nil, STATUS_OF[kind] or INTERNAL, tostring(message or kind)
end

--- Handlers over the agent and the daemon's state:
--- state = { boot_done=bool, started=seconds, boot=<boot progress>, registry_gen= }
function M.new(agent, state)
    local h = {}
    local lister = listing.new(agent, state)
    local releaser = idle.releaser(agent)
    local bus = require("mcp.pulse").new(agent) -- wakes the WatchEvents followers
    state.event_listeners = state.event_listeners or {}
    table.insert(state.event_listeners, bus.notify)

    -- Writes wait for boot: the boot sequence owns the containers until then.
    local function writable()
        if state.boot_done then return true end
        return nil, UNAVAILABLE, "the agent is still booting; try again when BootStatus says boot_done"
    end

    h[SVC .. "Deploy"] = function(req)
        local ok, st, msg = writable()
        if not ok then return nil, st, msg end
        if req.service_toml == "" then return nil, INVALID_ARGUMENT, "service_toml is empty" end
        local source = req.source ~= "" and req.source or "<DeployRequest>"
        local resp, kind, detail = ops.deploy(agent, req.service_toml, source,
            { allow_unknown = req.allow_unknown })
        if not resp then return failure(kind, detail) end
        return resp
    end

    local function action(verb)
        return function(req)
            local ok, st, msg = writable()
            if not ok then return nil, st, msg end
            if req.service == "" then return nil, INVALID_ARGUMENT, "service is required" end
            local resp, kind, detail = ops.service_action(agent, verb, req.service, req.component)
            if not resp then return failure(kind, detail) end
            return resp
        end
    end
    h[SVC .. "StartService"] = action("start")
    h[SVC .. "StopService"] = action("stop")
    h[SVC .. "RestartService"] = action("restart")

    h[SVC .. "RemoveService"] = function(req)
        local ok, st, msg = writable()
        if not ok then return nil, st, msg end
        if req.component ~= "" then return nil, INVALID_ARGUMENT, "remove takes a whole service" end
        local resp, kind, detail = ops.remove(agent, req.service)
        if not resp then return failure(kind, detail) end
        return resp
    end

    -- what dashboards poll: packed bytes kept while nothing changed
    h[SVC .. "ListServices"] = function()
        return lister.packed(), true
    end

    h[SVC .. "GetServiceStatus"] = function(req)
        local resp, kind, detail = ops.status(agent, req.service)
        if not resp then return failure(kind, detail) end
        return resp
    end

    h[SVC .. "Recover"] = function(req)
        if not req.dry_run then
            local ok, st, msg = writable()
            if not ok then return nil, st, msg end
        end
        local recover, err = policies.get("recover")
        if not recover then return nil, INTERNAL, err end
        local report, kind, detail = ops.recover(agent, recover, req.dry_run)
        if not report then
            if kind == "policy" then agent.log.error("recover policy failed", { error = detail }) end
            return failure(kind, detail)
        end
        return report
    end

    h[SVC .. "BootStatus"] = function()
        return { stages = state.boot.view(), boot_done = state.boot_done, error = state.boot_error or "" }
    end

    h[SVC .. "NodeStatus"] = function()
        local running = 0
        local list = agent.runtime.list()
        for _, c in ipairs(list or {}) do
            if c.state == "running" then running = running + 1 end
        end
        return { node_name = agent.config.node_name or "", version = agent.version or "",
                 uptime_seconds = agent.clock.now() - state.started,
                 services = #agent.registry.services(), containers_running = running,
                 boot_done = state.boot_done }
    end

    h[HEALTH .. "Check"] = function(req)
        if req.service ~= "" and req.service ~= "mcp.agent.v1.AgentService" then
            return nil, NOT_FOUND, "unknown service " .. req.service
        end
        return { status = state.boot_done and SERVING or NOT_SERVING }
    end

    h[HEALTH .. "Watch"] = function()
        return nil, UNIMPLEMENTED, "Watch is not served; poll Check"
    end

    -- The task body of every call: the call answers even when the handler
    -- raises or the task is cancelled (its __close fails it).
    -- WatchEvents (SPEC §10): the events since since_unix_ms (0: none of
    -- the past), then each new one as it is stored, until the client goes.
    -- A follower costs one wake-up a second to notice a client gone quietly.
    h[SVC .. "WatchEvents"] = function(req, call)
        call:wait_closed(0) -- a stream from now on: shutdown ends it at once
        local service = req.service ~= "" and req.service or nil
        local last = 0
        local function send(e)
            last = e.id
            return call:send({ time_unix_ms = math.floor(e.time * 1000 + 0.5), service = e.service or "",
                               component = e.component or "", kind = e.kind, message = e.message or "",
                               exit_code = e.exit_code or 0 })
        end
        if req.since_unix_ms > 0 then
            local past = agent.registry.events(service, M.WATCH_BACKLOG, req.since_unix_ms / 1000) or {}
            for i = #past, 1, -1 do
                if not send(past[i]) then return STREAMED end
            end
        end
        if last == 0 then
            local newest = agent.registry.events(nil, 1) or {}
            last = newest[1] and newest[1].id or 0
        end
        while not call:closed() do
            local new = agent.registry.events_after(last, service, 500) or {}
            for _, e in ipairs(new) do
                if not send(e) then return STREAMED end
            end
            if #new == 0 then bus.wait(1) end
        end
        return STREAMED
    end

    return function(call, method, request)
        local guard <close> = call -- luacheck: ignore 211
        releaser.touch()
        local handler = h[method]
        if not handler then
            metrics.grpc(nil, UNIMPLEMENTED)
            call:fail(UNIMPLEMENTED, "unknown method " .. tostring(method))
            return
        end
        local ok, resp, status, message = xpcall(handler, debug.traceback, request, call)
        if MUTATING[method] then lister.expire(); metrics.sync(agent.registry) end
        if ok and resp == STREAMED then
            metrics.grpc(method, OK)
            if not call:closed() then call:finish() end
            return
        end
        if ok and type(resp) == "string" and status == true then
            metrics.grpc(method, OK)
            call:reply_packed(resp)
            return
        end
        if not ok then
            metrics.grpc(method, INTERNAL)
            agent.log.error("API handler failed", { method = method, error = resp })
            call:fail(INTERNAL, "internal error: " .. tostring(resp):match("^[^\n]*"))
            return
        end
        if not resp then
            metrics.grpc(method, status or INTERNAL)
            call:fail(status or INTERNAL, message or "failed")
            return
        end
        local sent, err = pcall(call.reply, call, resp)
        metrics.grpc(method, sent and OK or INTERNAL)
        if not sent then
            agent.log.error("API answer does not fit its message", { method = method, error = err })
            call:fail(INTERNAL, "internal error: " .. tostring(err))
        end
    end
end

return M
