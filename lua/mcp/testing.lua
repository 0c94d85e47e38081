-- mcp.testing: a complete fake `agent` (docs/LUA_API.md) in pure Lua, on a
-- virtual clock, so policies are tested in milliseconds without podman.
--
--   local t = require "mcp.testing"
--   local w = t.world{
--       services = { { name = "mcias", image = "localhost/mcias:1",
--                      routes = { { name = "api", port = 8443, host_port = 10001 } } } },
--       images = { "localhost/mcias:1" },
--       health = { mcias = { after = 5 } },   -- healthy 5 s after start
--   }
--   local report = w:run(function(agent) return recover.run(agent, {}) end)
--   w.runtime.mutations(), w.logs, w:now(), w.events()
--
-- Service tables are filled with defaults: active = true, components[i] gets
-- desired_state = "running", container = its container name, empty lists;
-- a service with `image` and no `components` gets one component of its name.

local sched_mod = require("mcp.sched")
local fake_runtime = require("mcp.fake_runtime")
local spec = require("mcp.spec")

-- `require "policy.NAME"` resolves here as in the daemon (mcp.policy_path).
require("mcp.policy_path").install()

local M = {}

local function deep_copy(v)
    if type(v) ~= "table" then return v end
    local out = {}
    for k, x in pairs(v) do out[k] = deep_copy(x) end
    return out
end
M.deep_copy = deep_copy

local COMPONENT_FIELDS = { "image", "network", "user", "restart", "ports", "volumes", "cmd",
                           "env", "desired_state", "health", "routes" }

--- Fills a component table's defaults (in a copy).
function M.component(service_name, c)
    c = deep_copy(c)
    c.name = c.name or service_name
    c.container = c.container or spec.container_name(service_name, c.name)
    c.desired_state = c.desired_state or "running"
    for _, k in ipairs({ "ports", "volumes", "cmd", "env", "routes" }) do c[k] = c[k] or {} end
    return c
end

--- Fills a service table's defaults (in a copy).
function M.service(s)
    if type(s) ~= "table" or type(s.name) ~= "string" then
        error("testing.service: a service needs a name", 2)
    end
    local out = { name = s.name, active = s.active ~= false, components = {} }
    local comps = s.components
    if not comps then
        local single = { name = s.name }
        for _, k in ipairs(COMPONENT_FIELDS) do single[k] = s[k] end
        single.container = s.container
        comps = { single }
    end
    for i, c in ipairs(comps) do out.components[i] = M.component(s.name, c) end
    return out
end

-- The fake registry ----------------------------------------------------

local function new_registry(services, now)
    local reg = {}
    local by_name = {}
    local events = {}

    for _, s in ipairs(services or {}) do
        local svc = M.service(s)
        if by_name[svc.name] then error("testing.world: duplicate service " .. svc.name, 3) end
        by_name[svc.name] = svc
    end

    local function check_name(fname, v)
        if type(v) ~= "string" then error(fname .. ": service name must be a string", 3) end
    end

    --- Every service (active or not), sorted by name, as fresh copies.
    function reg.services()
        local names = {}
        for n in pairs(by_name) do names[#names + 1] = n end
        table.sort(names)
        local out = {}
        for i, n in ipairs(names) do out[i] = deep_copy(by_name[n]) end
        return out
    end

    function reg.service(name)
        check_name("service", name)
        return deep_copy(by_name[name])
    end

    function reg.set_desired(service, component, state)
        check_name("set_desired", service)
        if state ~= "running" and state ~= "stopped" then
            error("set_desired: state must be \"running\" or \"stopped\"", 2)
        end
        local svc = by_name[service]
        if not svc then return 0 end
        local n = 0
        for _, c in ipairs(svc.components) do
            if (component == nil or c.name == component) and c.desired_state ~= state then
                c.desired_state = state
                n = n + 1
            end
        end
        return n
    end

    function reg.event(service, component, kind, message, exit_code)
        check_name("event", service)
        if type(kind) ~= "string" then error("event: kind must be a string", 2) end
        events[#events + 1] = { id = #events + 1, time = now(), service = service, component = component,
                                kind = kind, message = message and tostring(message) or "",
                                exit_code = exit_code }
        return true
    end

    -- Supervisor state per component, as the real registry keeps it:
    -- fields missing from `fields` keep their value, false clears one.
    local supervision = {}
    function reg.set_supervision(service, component, fields)
        check_name("set_supervision", service)
        local key = service .. "/" .. component
        local row = supervision[key] or { service = service, component = component, restarts = 0 }
        for k, v in pairs(fields) do
            if v == false then row[k] = nil else row[k] = v end
        end
        row.updated_at = now()
        supervision[key] = row
        return true
    end
    function reg.supervision(service, component)
        return deep_copy(supervision[service .. "/" .. component])
    end
    function reg.supervisions()
        local keys, out = {}, {}
        for k in pairs(supervision) do keys[#keys + 1] = k end
        table.sort(keys)
        for i, k in ipairs(keys) do out[i] = deep_copy(supervision[k]) end
        return out
    end
    function reg.clear_supervision(service, component)
        for k, row in pairs(supervision) do
            if row.service == service and (component == nil or row.component == component) then
                supervision[k] = nil
            end
        end
        return true
    end

    --- The newest events first, at most limit, of one service or (nil) all.
    function reg.events(service, limit)
        local out = {}
        for i = #events, 1, -1 do
            local e = events[i]
            if service == nil or e.service == service then
                out[#out + 1] = deep_copy(e)
                if limit and #out >= limit then break end
            end
        end
        return out
    end

    --- Forgets a service (its events stay, as in the real registry).
    function reg.delete(name)
        check_name("delete", name)
        local had = by_name[name] ~= nil
        by_name[name] = nil
        for k, row in pairs(supervision) do
            if row.service == name then supervision[k] = nil end
        end
        return had
    end

    -- Test controls.
    function reg.put(s)
        local svc = M.service(s)
        by_name[svc.name] = svc
    end
    function reg.raw(name) return by_name[name] end
    function reg.all_events() return events end

    return reg
end

-- Fake probes ----------------------------------------------------------

-- A rule says when a container answers its health probe:
--   { after = N }     healthy once it has run N seconds (default rule: after = 0)
--   "never" / { never = true }   never healthy (refused)
--   { flap = P }      alternates healthy/unhealthy every P seconds after start
--   { hang = true }   unhealthy and each probe hangs until its timeout
--   latency = s       the time a probe takes (default 0.01)
local function rule_healthy(rule, c, now)
    if rule == "never" or rule.never then return false end
    local up = now - (c.started_at or now)
    if up < (rule.after or 0) then return false end
    if rule.flap then
        local phase = math.floor((up - (rule.after or 0)) / rule.flap)
        return phase % 2 == 0
    end
    return true
end

local function new_probes(w)
    local probe = {}
    w.probe_log = {}

    -- The container publishing a host port (a running one first).
    local function container_at(port)
        local any
        for _, rec in ipairs(w.runtime.all()) do
            for _, p in ipairs(rec.ports) do
                if p.host_port == port then
                    if rec.state == "running" then return rec end
                    any = any or rec
                end
            end
        end
        return any
    end

    local function run_probe(kind, host, port, timeout)
        if type(host) ~= "string" then error("probe." .. kind .. ": host must be a string", 3) end
        if type(port) ~= "number" then error("probe." .. kind .. ": port must be a number", 3) end
        timeout = timeout or 5
        local start = w.sched.now()
        local c = container_at(port)
        local rule = c and (w.health[c.name] or w.health_default) or nil
        local latency = (type(rule) == "table" and rule.latency) or 0.01
        local ok, reason
        if not c or c.state ~= "running" then
            ok, reason = false, "refused"
        elseif type(rule) == "table" and rule.hang then
            latency, ok, reason = timeout, false, "timeout"
        else
            ok = rule_healthy(rule, c, start + math.min(latency, timeout))
            reason = not ok and (type(rule) == "table" and rule.reason or "refused") or nil
        end
        if latency > timeout then latency, ok, reason = timeout, false, "timeout" end
        local slept, why = w.sched.sleep(latency)
        local took = w.sched.now() - start
        if not slept then ok, reason = false, why end
        w.probe_log[#w.probe_log + 1] = { kind = kind, host = host, port = port, time = start,
                                          container = c and c.name, ok = ok, reason = reason }
        if ok then return true, took end
        return nil, reason, took
    end

    function probe.tcp(host, port, timeout) return run_probe("tcp", host, port, timeout) end
    function probe.http(host, port, _path, timeout) return run_probe("http", host, port, timeout) end
    function probe.grpc(host, port, _service, timeout) return run_probe("grpc", host, port, timeout) end
    return probe
end

-- Fake mc-proxy and certificates ----------------------------------------

local function new_proxy(w)
    local proxy = { routes_by_key = {} }
    local fail_queue = {}
    function proxy.add_route(route)
        if type(route) ~= "table" then error("proxy.add_route: route must be a table", 2) end
        w.sched.sleep(0.005)
        if #fail_queue > 0 then return nil, table.remove(fail_queue, 1) end
        if w.proxy_down then return nil, "refused" end
        proxy.routes_by_key[(route.listener or "") .. " " .. (route.hostname or "")] = deep_copy(route)
        return true
    end
    function proxy.remove_route(listener, hostname)
        if w.proxy_down then return nil, "refused" end
        proxy.routes_by_key[(listener or "") .. " " .. (hostname or "")] = nil
        return true
    end
    function proxy.list_routes()
        if w.proxy_down then return nil, "refused" end
        local keys, out = {}, {}
        for k in pairs(proxy.routes_by_key) do keys[#keys + 1] = k end
        table.sort(keys)
        for i, k in ipairs(keys) do out[i] = deep_copy(proxy.routes_by_key[k]) end
        return out
    end
    function proxy.fail_next(reason) fail_queue[#fail_queue + 1] = reason or "refused" end
    return proxy
end

local function new_certs(w)
    local certs = { issued = {} }
    function certs.ensure(service, hostnames)
        if type(service) ~= "string" then error("certs.ensure: service must be a string", 2) end
        w.sched.sleep(0.01)
        if w.certs_down then return nil, "refused" end
        local dir = (w.agent.config.mcproxy or {}).cert_dir or "/certs"
        certs.issued[#certs.issued + 1] = { service = service, hostnames = deep_copy(hostnames or {}) }
        return { cert = dir .. "/" .. service .. ".pem", key = dir .. "/" .. service .. ".key" }
    end
    return certs
end

-- The log ---------------------------------------------------------------

local function new_log(w)
    local log = {}
    w.logs = {}
    for _, level in ipairs({ "debug", "info", "warn", "error" }) do
        log[level] = function(msg, fields)
            local f = {}
            for k, v in pairs(fields or {}) do f[k] = tostring(v) end
            w.logs[#w.logs + 1] = { level = level, msg = tostring(msg), fields = f, time = w.sched.now() }
            if w.echo then io.stderr:write(string.format("[%8.3f] %-5s %s\n", w.sched.now(), level, msg)) end
        end
    end
    return log
end

-- The world -------------------------------------------------------------

local World = {}
World.__index = World

--- Builds a world. opts: services, images, containers (runtime records),
--- config (merged over defaults), health (container name -> probe rule),
--- health_default (rule for containers without one; default { after = 0 }),
--- latency (runtime latency, number or per op), proxy / certs (false to
--- leave agent.proxy / agent.certs out), echo (print logs to stderr),
--- events_max (unread runtime events kept per stream before "overflow").
--- Runtime knobs for supervision tests are w.runtime's (see the top of
--- mcp/fake_runtime.lua): kill, crash_loop, vanish, end_events.
function M.world(opts)
    opts = opts or {}
    local w = setmetatable({}, World)
    w.sched = sched_mod.new({ max_steps = opts.max_steps })
    w.health = opts.health or {}
    w.health_default = opts.health_default or { after = 0 }
    w.echo = opts.echo
    w.registry = new_registry(opts.services, w.sched.now)
    w.runtime = fake_runtime.new({
        images = opts.images, containers = opts.containers, latency = opts.latency or 0,
        now = w.sched.now, sleep = w.sched.sleep,
        -- events streams wake exactly when an event comes (fake_runtime "Events")
        task = { spawn = w.sched.spawn, wait = w.sched.wait, cancel = w.sched.cancel },
        events_max = opts.events_max,
    })
    local config = {
        node_name = "test", container_runtime = "fake", port_min = 10000, port_max = 19999,
        policy_dir = "policies", dry_run = false, monitor_interval = 60, boot = {},
        mcproxy = { socket = "/run/mc-proxy.sock", cert_dir = "/certs", listener = ":443" },
        metacrypt = {},
    }
    for k, v in pairs(opts.config or {}) do config[k] = deep_copy(v) end
    local agent = {
        config = config,
        registry = w.registry,
        runtime = w.runtime,
        -- the virtual world's wall clock starts at 2026-01-01T00:00:00Z
        clock = { now = w.sched.now, sleep = w.sched.sleep,
                  wallclock = function() return 1767225600 + w.sched.now() end },
        task = { spawn = w.sched.spawn, wait = w.sched.wait, cancel = w.sched.cancel, all = w.sched.all },
    }
    w.agent = agent
    agent.log = new_log(w)
    agent.probe = new_probes(w)
    if opts.proxy ~= false then w.proxy = new_proxy(w); agent.proxy = w.proxy end
    -- agent.metrics: a policy's own counters and gauges, values in
    -- w.metrics[full name][label key] ("" without labels)
    w.metrics = {}
    local function family(kind)
        return function(name, help)
            if type(name) ~= "string" or not name:match("^[a-z_][a-z0-9_]*$") then
                error("agent.metrics." .. kind .. ": bad name " .. tostring(name), 2)
            end
            if type(help) ~= "string" or help == "" then
                error("agent.metrics." .. kind .. ": a help text is required", 2)
            end
            local full = name:sub(1, 11) == "mcp_policy_" and name or ("mcp_policy_" .. name)
            if kind == "counter" and not full:match("_total$") then full = full .. "_total" end
            local values = w.metrics[full] or {}
            w.metrics[full] = values
            local function key(labels)
                local parts = {}
                for k, v in pairs(labels or {}) do parts[#parts + 1] = k .. "=" .. tostring(v) end
                table.sort(parts)
                return table.concat(parts, ",")
            end
            return {
                inc = function(_, labels, n) local k = key(labels); values[k] = (values[k] or 0) + (n or 1) end,
                set = function(_, labels, v) values[key(labels)] = v end,
            }
        end
    end
    agent.metrics = { counter = family("counter"), gauge = family("gauge") }
    -- agent.http: requests are recorded in w.http_requests; w.http_answer
    -- (status, body, or a function(req) -> status, body) is what they get
    w.http_requests = {}
    agent.http = { request = function(req)
        if type(req) ~= "table" or type(req.url) ~= "string" then
            error("http.request: needs a table with a url", 2)
        end
        w.http_requests[#w.http_requests + 1] = deep_copy(req)
        w.sched.sleep(w.http_latency or 0.01)
        local a = w.http_answer
        if type(a) == "function" then return a(req) end
        return (a and a.status) or 200, (a and a.body) or ""
    end }
    if opts.certs ~= false then w.certs = new_certs(w); agent.certs = w.certs end
    return w
end

--- Virtual now.
function World:now() return self.sched.now() end

--- Runs fn(agent, ...) as a task and the scheduler until it finishes.
--- Returns fn's results; raises fn's error (with traceback). opts.max_time:
--- virtual seconds before giving up (default one day); opts.cancel_after:
--- cancel the task after that many virtual seconds (then returns nil, "cancelled").
function World:run(fn, opts)
    opts = opts or {}
    local h = self.sched.spawn(fn, self.agent)
    local res = self:wait(h, opts)
    if res[1] == false then error(res[2], 0) end
    if res[1] == nil then return nil, res[2] end
    return table.unpack(res, 2, res.n)
end

--- Spawns fn(agent, ...) as a task without running the scheduler.
function World:spawn(fn, ...)
    return self.sched.spawn(fn, self.agent, ...)
end

--- Runs the scheduler until the task finishes; returns wait's results packed.
function World:wait(h, opts)
    opts = opts or {}
    local start = self.sched.now()
    local limit = start + (opts.max_time or 86400)
    if opts.cancel_after then
        self.sched.spawn(function()
            self.sched.sleep(opts.cancel_after)
            self.sched.cancel(h)
        end)
    end
    local function done() return h.status() ~= "running" and h.status() ~= "new" end
    local why = self.sched.run(limit, done)
    if not done() then
        if why == "idle" then
            error("testing: the task is blocked and nothing else can run (deadlock)", 2)
        end
        error(string.format("testing: the task did not finish within %g virtual seconds", limit - start), 2)
    end
    -- Let a cancelled task unwind, and anything it woke run, before reporting.
    self.sched.run(self.sched.now())
    return table.pack(h.wait())
end

--- Advances virtual time by seconds, running whatever is due.
function World:advance(seconds) return self.sched.advance(seconds) end

--- Log lines recorded at a level (or all), as "msg" strings.
function World:log_lines(level)
    local out = {}
    for _, l in ipairs(self.logs) do
        if level == nil or l.level == level then out[#out + 1] = l.msg end
    end
    return out
end

--- True when some log line at level contains the plain text `text`.
function World:logged(level, text)
    for _, l in ipairs(self.logs) do
        if (level == nil or l.level == level) and l.msg:find(text, 1, true) then return true end
    end
    return false
end

--- Events recorded in the registry, oldest first.
function World:events() return self.registry.all_events() end

return M
