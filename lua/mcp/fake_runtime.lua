-- mcp.fake_runtime: an in-memory container runtime implementing
-- `agent.runtime` (docs/LUA_API.md) over a set of images and containers.
--
-- Used by mcp.testing on the virtual clock and by the C host for
-- `container_runtime = "fake"` on the real clock: time comes only from the
-- `now` and `sleep` functions given to new(), never from os.*.
--
--   local rt = require("mcp.fake_runtime").new{ images = {"localhost/x:1"},
--       now = sched.now, sleep = sched.sleep, latency = { run = 0.3 } }
--   rt.run{ name = "x", image = "localhost/x:1", ports = {"127.0.0.1:8080:80/tcp"} }
--   rt.kill("x", 137)          -- the container dies
--   rt.fail_next("run", "failed", "OCI runtime error")
--   rt.mutations()             -- the run/start/stop/remove calls made so far
--
-- Every function is a closure: call with a dot, like the real agent.runtime.

local M = {}

local MUTATING = { run = true, start = true, stop = true, remove = true }
M.MUTATING = MUTATING

local function copy_list(t)
    local out = {}
    for i, v in ipairs(t or {}) do out[i] = v end
    return out
end

local function copy_ports(ports)
    local out = {}
    for i, p in ipairs(ports or {}) do
        out[i] = { host_ip = p.host_ip, host_port = p.host_port,
                   container_port = p.container_port, protocol = p.protocol }
    end
    return out
end

-- Parses a podman -p spec "[ip:][host:]container[/proto]" into a port
-- record. Returns the record, or nil and a message.
function M.parse_port(spec)
    if type(spec) == "table" then return spec end
    if type(spec) ~= "string" then return nil, "port spec must be a string" end
    local body, proto = spec:match("^(.-)/(%a+)$")
    if not body then body, proto = spec, "tcp" end
    local parts = {}
    for part in (body .. ":"):gmatch("([^:]*):") do parts[#parts + 1] = part end
    local ip, host, cont
    if #parts == 1 then
        cont = parts[1]
    elseif #parts == 2 then
        host, cont = parts[1], parts[2]
    elseif #parts == 3 then
        ip, host, cont = parts[1], parts[2], parts[3]
    else
        return nil, "bad port spec " .. spec
    end
    local cport = tonumber(cont)
    local hport = (host and host ~= "") and tonumber(host) or nil
    if not cport or (host and host ~= "" and not hport) then
        return nil, "bad port spec " .. spec
    end
    return { host_ip = (ip and ip ~= "") and ip or "0.0.0.0", host_port = hport,
             container_port = math.tointeger(cport) or cport, protocol = proto }
end

--- Creates a fake runtime.
--- opts.images: array of image names that exist; opts.any_image: every
---   image exists (for demos with container_runtime = "fake").
--- opts.containers: array of container records {name=, image=, state=,
---   exit_code=, ports = {specs or records}, env=, cmd=, ...} present at start.
--- opts.now(): current time (default: always 0); opts.sleep(s): waits
---   (default: returns at once); opts.latency: seconds per operation, a
---   number or a table {run=, list=, ..., default=}.
function M.new(opts)
    opts = opts or {}
    local now = opts.now or function() return 0 end
    local sleep = opts.sleep or function() return true end
    -- started_at: RFC 3339 from opts.wallclock() (seconds since the epoch)
    -- like podman's; without one, the virtual clock's reading as it is
    local function started()
        if opts.wallclock then return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(opts.wallclock())) end
        return now()
    end
    local latency = opts.latency or 0
    local rt = {}
    local images = {}
    local containers = {}      -- name -> record (full, with inspect fields)
    local failures = {}        -- op -> queue of {reason, detail}
    local ops = {}             -- the operation log
    local next_id = 0
    local next_ephemeral = 40000

    local function op_latency(op)
        if type(latency) == "number" then return latency end
        return latency[op] or latency.default or 0
    end

    local function log_op(entry)
        entry.time = now()
        ops[#ops + 1] = entry
        return entry
    end

    -- Waits the operation's latency, then pops an injected failure if any.
    -- Returns nil when the op should proceed, else (reason, detail).
    local function begin(op)
        local d = op_latency(op)
        if d > 0 then
            local ok, why = sleep(d)
            if not ok then return why or "cancelled" end
        end
        local q = failures[op]
        if q and #q > 0 then
            local f = table.remove(q, 1)
            return f.reason, f.detail
        end
        return nil
    end

    local function fail(entry, reason, detail)
        entry.ok = false
        entry.reason = reason
        return nil, reason, detail
    end

    local function record_public(c, full)
        local r = { id = c.id, name = c.name, image = c.image, state = c.state,
                    exit_code = c.exit_code, started_at = c.started_at,
                    ports = copy_ports(c.ports) }
        if full then
            r.env, r.cmd, r.volumes = copy_list(c.env), copy_list(c.cmd), copy_list(c.volumes)
            r.user, r.network, r.restart = c.user, c.network, c.restart
        end
        return r
    end

    local function new_id()
        next_id = next_id + 1
        return string.format("fake%08x", next_id)
    end

    local function parse_ports(list)
        local out = {}
        for i, spec in ipairs(list or {}) do
            local p, err = M.parse_port(spec)
            if not p then return nil, err end
            p = { host_ip = p.host_ip, host_port = p.host_port,
                  container_port = p.container_port, protocol = p.protocol }
            if not p.host_port then
                -- Like podman: an unpublished host port gets an ephemeral one.
                p.host_port = next_ephemeral
                next_ephemeral = next_ephemeral + 1
            end
            out[i] = p
        end
        return out
    end

    -- The running container, other than `except`, holding a host port.
    local function port_holder(port, except)
        for name, c in pairs(containers) do
            if name ~= except and c.state == "running" then
                for _, p in ipairs(c.ports) do
                    if p.host_port == port.host_port and p.protocol == port.protocol then
                        return name
                    end
                end
            end
        end
    end

    local function conflicting_port(c)
        for _, p in ipairs(c.ports) do
            local holder = port_holder(p, c.name)
            if holder then
                return string.format("port %d already in use by %s", p.host_port, holder)
            end
        end
    end

    local function add_container(spec, state)
        local ports, perr = parse_ports(spec.ports)
        if not ports then error("fake runtime: " .. perr, 3) end
        local c = {
            id = spec.id or new_id(), name = spec.name, image = spec.image,
            state = state or spec.state or "running", exit_code = spec.exit_code or 0,
            started_at = spec.started_at, ports = ports,
            env = copy_list(spec.env), cmd = copy_list(spec.cmd), volumes = copy_list(spec.volumes),
            user = spec.user, network = spec.network, restart = spec.restart,
        }
        if c.state == "running" and not c.started_at then c.started_at = started() end
        containers[c.name] = c
        return c
    end

    local function check_name(fname, name)
        if type(name) ~= "string" or name == "" then
            error(fname .. ": container name must be a non-empty string", 3)
        end
    end

    -- The agent.runtime API ---------------------------------------------

    --- All containers (any state), sorted by name.
    function rt.list()
        local entry = log_op({ op = "list", ok = true })
        local reason, detail = begin("list")
        if reason then return fail(entry, reason, detail) end
        local names = {}
        for name in pairs(containers) do names[#names + 1] = name end
        table.sort(names)
        local out = {}
        for i, name in ipairs(names) do out[i] = record_public(containers[name], false) end
        return out
    end

    --- One container with env, cmd, volumes, user, network, restart.
    function rt.inspect(name)
        check_name("inspect", name)
        local entry = log_op({ op = "inspect", name = name, ok = true })
        local reason, detail = begin("inspect")
        if reason then return fail(entry, reason, detail) end
        local c = containers[name]
        if not c then return fail(entry, "no such container") end
        return record_public(c, true)
    end

    --- Creates and starts a container from spec; returns its id.
    function rt.run(spec)
        if type(spec) ~= "table" then error("run: spec must be a table", 2) end
        check_name("run", spec.name)
        if type(spec.image) ~= "string" or spec.image == "" then
            error("run: spec.image must be a non-empty string", 2)
        end
        for _, k in ipairs({ "ports", "volumes", "cmd", "env" }) do
            if spec[k] ~= nil and type(spec[k]) ~= "table" then
                error("run: spec." .. k .. " must be an array", 2)
            end
        end
        local entry = log_op({ op = "run", name = spec.name, image = spec.image, ok = true,
                               spec = spec })
        local reason, detail = begin("run")
        if reason then return fail(entry, reason, detail) end
        if containers[spec.name] then
            return fail(entry, "name in use", "the container name \"" .. spec.name .. "\" is already in use")
        end
        if not images[spec.image] and not opts.any_image then
            return fail(entry, "no such image", spec.image .. ": image not known")
        end
        for _, p in ipairs(spec.ports or {}) do
            if not M.parse_port(p) then return fail(entry, "failed", "bad port spec " .. tostring(p)) end
        end
        local c = add_container({ name = spec.name, image = spec.image, ports = spec.ports,
            env = spec.env, cmd = spec.cmd, volumes = spec.volumes, user = spec.user,
            network = spec.network, restart = spec.restart }, "created")
        local conflict = conflicting_port(c)
        if conflict then
            return fail(entry, "failed", conflict)
        end
        c.state, c.started_at, c.exit_code = "running", started(), 0
        entry.id = c.id
        return c.id
    end

    --- Starts an existing container.
    function rt.start(name)
        check_name("start", name)
        local entry = log_op({ op = "start", name = name, ok = true })
        local reason, detail = begin("start")
        if reason then return fail(entry, reason, detail) end
        local c = containers[name]
        if not c then return fail(entry, "no such container") end
        if c.state ~= "running" then
            local conflict = conflicting_port(c)
            if conflict then return fail(entry, "failed", conflict) end
            c.state, c.started_at, c.exit_code = "running", started(), 0
        end
        return true
    end

    --- Stops a container (exit code 0 as after a clean SIGTERM).
    function rt.stop(name, timeout_s)
        check_name("stop", name)
        if timeout_s ~= nil and type(timeout_s) ~= "number" then
            error("stop: timeout must be a number", 2)
        end
        local entry = log_op({ op = "stop", name = name, ok = true })
        local reason, detail = begin("stop")
        if reason then return fail(entry, reason, detail) end
        local c = containers[name]
        if not c then return fail(entry, "no such container") end
        if c.state == "running" then c.state, c.exit_code = "exited", 0 end
        return true
    end

    --- Removes a container, forcibly; a missing one is fine.
    function rt.remove(name)
        check_name("remove", name)
        local entry = log_op({ op = "remove", name = name, ok = true })
        local reason, detail = begin("remove")
        if reason then return fail(entry, reason, detail) end
        entry.existed = containers[name] ~= nil
        containers[name] = nil
        return true
    end

    --- true when the image is present locally, false when not.
    function rt.image_exists(image)
        if type(image) ~= "string" then error("image_exists: image must be a string", 2) end
        local entry = log_op({ op = "image_exists", image = image, ok = true })
        local reason, detail = begin("image_exists")
        if reason then return fail(entry, reason, detail) end
        return images[image] == true or opts.any_image == true
    end

    -- Test and demo controls (not part of agent.runtime) ----------------

    --- The next call of `op` fails with (nil, reason, detail); `count` times (default 1).
    function rt.fail_next(op, reason, detail, count)
        if type(op) ~= "string" then error("fail_next: op must be a string", 2) end
        failures[op] = failures[op] or {}
        for _ = 1, count or 1 do
            table.insert(failures[op], { reason = reason or "failed", detail = detail })
        end
    end

    --- The container's process dies with exit_code (default 137).
    function rt.kill(name, exit_code)
        local c = containers[name]
        if not c then return nil, "no such container" end
        c.state, c.exit_code = "exited", exit_code or 137
        return true
    end

    --- Sets a container's state directly ("created", "exited", "running", …).
    function rt.set_state(name, state, exit_code)
        local c = containers[name]
        if not c then return nil, "no such container" end
        c.state = state
        if exit_code then c.exit_code = exit_code end
        if state == "running" then c.started_at = started() end
        return true
    end

    --- Adds a container as if it had been created earlier (no op logged).
    function rt.add_container(rec)
        check_name("add_container", rec and rec.name)
        return add_container(rec).id
    end

    function rt.add_image(image) images[image] = true end
    function rt.remove_image(image) images[image] = nil end

    --- Every raw container sorted by name, without logging an op (for probes).
    function rt.all()
        local names = {}
        for name in pairs(containers) do names[#names + 1] = name end
        table.sort(names)
        local out = {}
        for i, name in ipairs(names) do out[i] = containers[name] end
        return out
    end

    --- The raw container (shared, not a copy) or nil: for tests.
    function rt.container(name) return containers[name] end

    --- The operation log: every call, in order, {op=, name=, time=, ok=, reason=}.
    function rt.ops() return ops end

    --- Only the calls that change state (run, start, stop, remove).
    function rt.mutations()
        local out = {}
        for _, e in ipairs(ops) do
            if MUTATING[e.op] then out[#out + 1] = e end
        end
        return out
    end

    function rt.clear_ops() ops = {} end

    for _, image in ipairs(opts.images or {}) do images[image] = true end
    for _, c in ipairs(opts.containers or {}) do rt.add_container(c) end
    return rt
end

return M
