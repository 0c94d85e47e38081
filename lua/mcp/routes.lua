-- mcp.routes: a component's routes at mc-proxy (SPEC §4, §8). Registering
-- is idempotent (AddRoute), so it is safe to repeat on every start and
-- recover; L7 routes need a certificate first. Every failure is a warning:
-- the container runs regardless, and the next recover tries again.
local M = {}

local reason_text = require("mcp.reason")

local function listener(agent)
    local mcproxy = (agent.config and agent.config.mcproxy) or {}
    return (mcproxy.listener and mcproxy.listener ~= "") and mcproxy.listener or ":443"
end

--- The routes of a component that mc-proxy can serve: a hostname and a host port.
local function routable(component)
    local out = {}
    for _, r in ipairs(component.routes or {}) do
        if r.hostname and r.hostname ~= "" and r.host_port and r.host_port ~= 0 then out[#out + 1] = r end
    end
    return out
end

M.routable = routable

--- Registers every routable route of a component; warn(msg) gets each failure.
--- Returns the number registered, the number that failed, and whether every
--- failure was quick (worth retrying at once; a timeout is not).
function M.register(agent, service, component, warn)
    if not agent.proxy then return 0, 0, true end
    local name = component.container or component.name
    local n, failed, quick = 0, 0, true
    local function fail(reason, fmt, ...)
        failed = failed + 1
        if reason == "timeout" then quick = false end
        warn(string.format("%s: " .. fmt, name, ...))
    end
    for _, route in ipairs(routable(component)) do
        local r = { listener = listener(agent), hostname = route.hostname, mode = route.mode or "l4",
                    backend = "127.0.0.1:" .. route.host_port, service = service.name }
        local ok = true
        if r.mode == "l7" and not agent.certs then
            ok = false
            fail(nil, "l7 route %s needs a certificate, but [metacrypt] is not configured", route.hostname)
        elseif r.mode == "l7" then
            local cert, reason, detail = agent.certs.ensure(service.name, M.hostnames(service))
            if cert then
                r.cert_path, r.key_path = cert.cert, cert.key
            else
                ok = false
                fail(reason, "cannot ensure TLS certificate for %s: %s", route.hostname, reason_text(reason, detail))
            end
        end
        if ok then
            local done, reason, detail = agent.proxy.add_route(r)
            if done then
                n = n + 1
            else
                fail(reason, "cannot register route %s with mc-proxy: %s", route.hostname, reason_text(reason, detail))
            end
        end
    end
    return n, failed, quick
end

--- register, retried with backoff while failures are quick (mc-proxy or
--- Metacrypt refusing or erroring; a timeout is not retried): warn hears the
--- failures of the last attempt only. opts: attempts (default 3), delays (a
--- backoff with .next() -> seconds; default 0.2 s, 0.4 s, …).
function M.register_retrying(agent, service, component, warn, opts)
    opts = opts or {}
    local attempts = opts.attempts or 3
    local n, failed = 0, 0
    for attempt = 1, attempts do
        local heard = {}
        local quick
        n, failed, quick = M.register(agent, service, component, function(msg) heard[#heard + 1] = msg end)
        local last = attempt == attempts or failed == 0 or not quick
        if last then
            for _, msg in ipairs(heard) do warn(msg) end
            return n, failed
        end
        local delay = opts.delays and opts.delays.next() or 0.2 * attempt
        if not agent.clock.sleep(delay) then
            for _, msg in ipairs(heard) do warn(msg) end
            return n, failed
        end
    end
    return n, failed
end

--- Removes a component's routes from mc-proxy; warn(msg) gets each failure.
function M.unregister(agent, component, warn)
    if not agent.proxy then return 0 end
    local n = 0
    for _, route in ipairs(routable(component)) do
        local done, reason, detail = agent.proxy.remove_route(listener(agent), route.hostname)
        if done then
            n = n + 1
        else
            warn(string.format("%s: cannot remove route %s from mc-proxy: %s",
                component.container or component.name, route.hostname, reason_text(reason, detail)))
        end
    end
    return n
end

--- Removes the routes mc-proxy holds for the service that none of its
--- components (as stored now) has: a dropped route, a renamed or removed
--- component, a service removed. Returns how many were removed.
function M.remove_stale(agent, service, warn)
    if not agent.proxy then return 0 end
    local list = agent.proxy.list_routes()
    if not list then return 0 end
    local keep = {}
    for _, c in ipairs(service.components or {}) do
        for _, r in ipairs(routable(c)) do keep[r.hostname .. "|127.0.0.1:" .. r.host_port] = true end
    end
    local n = 0
    for _, r in ipairs(list) do
        if r.service == service.name and not keep[(r.hostname or "") .. "|" .. (r.backend or "")] then
            local done, reason, detail = agent.proxy.remove_route(r.listener, r.hostname)
            if done then
                n = n + 1
            else
                warn(string.format("cannot remove stale route %s of %s from mc-proxy: %s", tostring(r.hostname),
                    service.name, reason_text(reason, detail)))
            end
        end
    end
    return n
end

--- Every l7 hostname of a service: its one certificate covers them all.
function M.hostnames(service)
    local seen, out = {}, {}
    for _, c in ipairs(service.components or {}) do
        for _, r in ipairs(c.routes or {}) do
            if r.mode == "l7" and r.hostname and r.hostname ~= "" and not seen[r.hostname] then
                seen[r.hostname] = true
                out[#out + 1] = r.hostname
            end
        end
    end
    return out
end

--- The set of registered routes, keyed "listener|hostname|backend", or nil.
function M.registered(agent)
    if not agent.proxy then return nil end
    local list = agent.proxy.list_routes()
    if not list then return nil end
    local set = {}
    for _, r in ipairs(list) do
        set[(r.listener or "") .. "|" .. (r.hostname or "") .. "|" .. (r.backend or "")] = true
    end
    return set, listener(agent)
end

return M
