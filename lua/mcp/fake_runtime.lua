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
--
-- Events, as `podman events` streams them (core.podman.events()):
--   local s = rt.events()      -- or nil, reason, detail (fail_next("events", …))
--   s:next(timeout)            -- { name=, id=, status=, exit_code=, time=, image=, labels= }
--                              -- or nil, "timeout" | "closed", detail | "cancelled" | "overflow"
--   s:close()                  -- also <close> and garbage collection
-- The fake emits, for its own operations: run -> create, init, start;
-- start -> init, start; stop -> died (0), cleanup, stop; remove -> (died 137,
-- cleanup when it ran) remove; a process exit -> died (exit_code), cleanup.
-- `time` is opts.wallclock() when given, else the clock's now().
-- next() waits on the given clock: with opts.task = { spawn=, wait=, cancel= }
-- (agent.task's shape; mcp.testing passes its scheduler's) it wakes exactly
-- when an event comes; with only sleep it looks every opts.poll seconds
-- (default 0.05). Unread events beyond opts.events_max (default 10000) are
-- dropped and next() answers "overflow" once.
--
-- Knobs for tests (not part of agent.runtime):
--   rt.kill(name, code, {oom=true})  the process dies now: kill, died(code, default 137), cleanup
--   rt.crash_loop(name, code, after) every start of a container of that name (now if it runs,
--                                    and after each later run/start) exits with code after
--                                    `after` seconds; rt.crash_loop(name) clears it
--   rt.vanish(name) / rt.vanish()    podman lost its state: that container (or all) is gone,
--                                    with no event at all
--   rt.end_events(detail)            every open stream ends, as if the podman events child
--                                    died: queued events are still read, then next() says
--                                    nil, "closed", detail; a new events() call works again
--   rt.mute_events(on)               the child stops producing: streams stay open, events are lost
--   rt.streams()                     how many streams are open

local M = {}

local MUTATING = { run = true, start = true, stop = true, remove = true, pull = true }
M.MUTATING = MUTATING

local function copy_list(t)
    local out = {}
    for i, v in ipairs(t or {}) do out[i] = v end
    return out
end

local function copy_map(t)
    local out = {}
    for k, v in pairs(t or {}) do out[k] = v end
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
---   image exists (for demos with container_runtime = "fake");
---   opts.registry: images that rt.pull can fetch.
--- opts.containers: array of container records {name=, image=, state=,
---   exit_code=, ports = {specs or records}, env=, cmd=, ...} present at start.
--- opts.now(): current time (default: always 0); opts.sleep(s): waits
---   (default: returns at once); opts.latency: seconds per operation, a
---   number or a table {run=, list=, ..., default=}. opts.task, opts.poll,
---   opts.events_max: see Events above.
M.EVENTS_MAX = 10000

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
    local registry = {}        -- images rt.pull can fetch (opts.registry, publish_image)
    local containers = {}      -- name -> record (full, with inspect fields)
    local failures = {}        -- op -> queue of {reason, detail}
    local ops = {}             -- the operation log
    local next_id = 0
    local next_ephemeral = 40000

    -- Events ------------------------------------------------------------
    local events_max = opts.events_max or M.EVENTS_MAX
    local poll = opts.poll or 0.05
    local task_api = opts.task
    local streams = setmetatable({}, { __mode = "k" }) -- open streams (collectable)
    local crash_rules = {} -- name -> { code =, after = }

    -- The event time of something that happened at clock time t.
    local function event_time(t)
        if opts.wallclock then return opts.wallclock() - (now() - t) end
        return t
    end

    -- Wakes the task waiting on one stream (its sleeper is cancelled).
    local function wake(st)
        if st.waker then
            st.notified = true
            local w = st.waker
            st.waker = nil
            task_api.cancel(w)
        end
    end

    -- Wakes every stream's waiting task.
    local function notify()
        for st in pairs(streams) do wake(st) end
    end

    local muted = false -- rt.mute_events: streams stay open but hear nothing

    local function emit(c, status, exit_code, at)
        if muted then return end
        local ev = { name = c.name, id = c.id, status = status, exit_code = exit_code,
                     time = event_time(at or now()), image = c.image, labels = copy_map(c.labels) }
        for st in pairs(streams) do
            if not st.closed and not st.ended then
                if #st.queue >= events_max then
                    st.queue, st.overflowed = {}, true
                end
                st.queue[#st.queue + 1] = ev
            end
        end
        notify()
    end

    local stamp -- defined below (started_at / finished_at text or number)

    -- A container's process ended at clock time `at` with code.
    local function exited(c, code, at, oom)
        c.state, c.exit_code, c.due = "exited", code, nil
        c.finished_at = stamp(at)
        if oom then c.oom = true end
        emit(c, "died", code, at)
        emit(c, "cleanup", nil, at)
    end

    -- The process of a container just started: arms its crash-loop rule.
    local function started_now(c)
        c.oom, c.finished_at = false, nil
        local rule = crash_rules[c.name]
        c.due = rule and (now() + rule.after) or nil
        c.due_code = rule and rule.code
    end

    -- Applies every crash that is due by now, oldest first (time is lazy:
    -- nothing runs between calls, so each call settles what happened).
    local function settle()
        while true do
            local first
            for _, c in pairs(containers) do
                if c.state == "running" and c.due and c.due <= now()
                        and (not first or c.due < first.due or (c.due == first.due and c.name < first.name)) then
                    first = c
                end
            end
            if not first then return end
            exited(first, first.due_code, first.due)
        end
    end

    -- The clock time of the next due crash, or nil.
    local function next_due()
        local t
        for _, c in pairs(containers) do
            if c.state == "running" and c.due and (not t or c.due < t) then t = c.due end
        end
        return t
    end

    -- Waits until clock time `until_t` (nil: for ever) or an event, whichever
    -- first. Returns true, or nil, "cancelled" when the calling task was.
    local function wait_event(st, until_t)
        local dur = until_t and math.max(0, until_t - now())
        if not task_api then
            local ok, why = sleep(dur and math.min(dur, poll) or poll)
            if not ok then return nil, why or "cancelled" end
            return true
        end
        st.notified = false
        local sleeper = task_api.spawn(function()
            if dur then return sleep(dur) end
            while sleep(86400) do end
        end)
        st.waker = sleeper
        local ok = task_api.wait(sleeper)
        st.waker = nil
        if st.notified then return true end
        if ok then return true end -- slept until until_t
        task_api.cancel(sleeper)   -- the wait was cancelled, not the sleeper
        return nil, "cancelled"
    end

    local Stream = {}
    Stream.__index = Stream

    local function check_stream(self)
        if getmetatable(self) ~= Stream then error("events: call as stream:next() / stream:close()", 3) end
    end

    --- Next event, or nil with "timeout", "closed" (+ detail), "cancelled", "overflow".
    function Stream.next(self, timeout)
        check_stream(self)
        if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout or timeout < 0) then
            error("bad argument #1 to 'next' (timeout must be a number of seconds >= 0)", 2)
        end
        local deadline = timeout and now() + timeout
        while true do
            settle()
            if self.overflowed then
                self.overflowed = false
                return nil, "overflow"
            end
            if #self.queue > 0 then return table.remove(self.queue, 1) end
            if self.ended then return nil, "closed", self.detail end
            if self.closed then return nil, "closed", "the stream was closed" end
            if deadline and now() >= deadline then return nil, "timeout" end
            -- one waiter at a time; a waiter whose task was closed mid-wait no longer counts
            local w = self.waiting
            if w and coroutine.status(w) ~= "dead" then
                error("bad argument #1 to 'next' (another task is already waiting on this stream)", 2)
            end
            local until_t = next_due()
            if deadline and (not until_t or deadline < until_t) then until_t = deadline end
            self.waiting = coroutine.running()
            local ok, why = wait_event(self, until_t)
            self.waiting = nil
            if not ok then return nil, why end
        end
    end

    --- Ends the stream (the podman events child is killed); idempotent.
    function Stream.close(self)
        check_stream(self)
        if self.closed then return end
        self.closed, self.queue, self.overflowed = true, {}, false
        streams[self] = nil
        wake(self)
    end
    Stream.__close = Stream.close
    Stream.__gc = function(self) self.closed = true end
    Stream.__tostring = function(self)
        return string.format("fake events (%s, %d queued)", self.closed and "closed" or "open", #self.queue)
    end

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

    -- Like started(), for clock time t (finished_at of a lazily settled crash).
    stamp = function(t)
        if opts.wallclock then
            return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(opts.wallclock() - (now() - t)))
        end
        return t
    end

    local function fail(entry, reason, detail)
        entry.ok = false
        entry.reason = reason
        return nil, reason, detail
    end

    -- Every operation: recorded, its latency waited and an injected failure
    -- popped, then the crashes due by now applied. -> entry | nil, reason, detail
    local function enter(entry)
        log_op(entry)
        local reason, detail = begin(entry.op)
        if reason then return fail(entry, reason, detail) end
        settle()
        return entry
    end

    local function record_public(c, full)
        local r = { id = c.id, name = c.name, image = c.image, state = c.state,
                    exit_code = c.exit_code, started_at = c.started_at,
                    finished_at = c.finished_at or "", oom = full and c.oom or false,
                    ports = copy_ports(c.ports), labels = copy_map(c.labels) }
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
            labels = copy_map(spec.labels), finished_at = spec.finished_at, oom = spec.oom or false,
        }
        if c.state == "running" and not c.started_at then c.started_at = started() end
        if c.state == "running" and crash_rules[c.name] then
            c.due, c.due_code = now() + crash_rules[c.name].after, crash_rules[c.name].code
        end
        containers[c.name] = c
        return c
    end

    local function check_name(fname, name, level)
        if type(name) ~= "string" or name == "" then
            error(fname .. ": container name must be a non-empty string", level or 3)
        end
    end

    -- An operation on the container `name` (checked, entered as above):
    -- -> entry, the container or nil | nil, nil, reason, detail
    local function enter_on(op, name)
        check_name(op, name, 4)
        local entry, reason, detail = enter({ op = op, name = name, ok = true })
        if not entry then return nil, nil, reason, detail end
        return entry, containers[name]
    end

    -- The agent.runtime API ---------------------------------------------

    --- All containers (any state), sorted by name.
    function rt.list()
        local entry, reason, detail = enter({ op = "list", ok = true })
        if not entry then return nil, reason, detail end
        local names = {}
        for name in pairs(containers) do names[#names + 1] = name end
        table.sort(names)
        local out = {}
        for i, name in ipairs(names) do out[i] = record_public(containers[name], false) end
        return out
    end

    --- One container with env, cmd, volumes, user, network, restart.
    function rt.inspect(name)
        local entry, c, reason, detail = enter_on("inspect", name)
        if not entry then return nil, reason, detail end
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
        local labels = {}
        if spec.labels ~= nil then
            if type(spec.labels) ~= "table" then error("run: spec.labels must be a table of key = value strings", 2) end
            for k, v in pairs(spec.labels) do
                if type(k) ~= "string" or (type(v) ~= "string" and type(v) ~= "number") then
                    error("run: spec.labels must map strings to strings", 2)
                end
                if k == "" or k:find("=", 1, true) then
                    error("run: spec.labels keys must be non-empty and without '='", 2)
                end
                labels[k] = tostring(v)
            end
        end
        local entry, reason, detail = enter({ op = "run", name = spec.name, image = spec.image, ok = true,
                                              spec = spec })
        if not entry then return nil, reason, detail end
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
            network = spec.network, restart = "no", labels = labels }, "created")
        emit(c, "create")
        local conflict = conflicting_port(c)
        if conflict then
            return fail(entry, "failed", conflict)
        end
        c.state, c.started_at, c.exit_code = "running", started(), 0
        started_now(c)
        emit(c, "init")
        emit(c, "start")
        entry.id = c.id
        return c.id
    end

    --- Starts an existing container.
    function rt.start(name)
        local entry, c, reason, detail = enter_on("start", name)
        if not entry then return nil, reason, detail end
        if not c then return fail(entry, "no such container") end
        if c.state ~= "running" then
            local conflict = conflicting_port(c)
            if conflict then return fail(entry, "failed", conflict) end
            c.state, c.started_at, c.exit_code = "running", started(), 0
            started_now(c)
            emit(c, "init")
            emit(c, "start")
        end
        return true
    end

    --- Stops a container (exit code 0 as after a clean SIGTERM).
    function rt.stop(name, timeout_s)
        if timeout_s ~= nil and type(timeout_s) ~= "number" then
            error("stop: timeout must be a number", 2)
        end
        local entry, c, reason, detail = enter_on("stop", name)
        if not entry then return nil, reason, detail end
        if not c then return fail(entry, "no such container") end
        if c.state == "running" then
            exited(c, 0, now())
            emit(c, "stop")
        end
        return true
    end

    --- Removes a container, forcibly; a missing one is fine.
    function rt.remove(name)
        local entry, c, reason, detail = enter_on("remove", name)
        if not entry then return nil, reason, detail end
        entry.existed = c ~= nil
        if c then
            if c.state == "running" then exited(c, 137, now()) end
            containers[name] = nil
            emit(c, "remove")
        end
        return true
    end

    --- true when the image is present locally, false when not.
    function rt.image_exists(image)
        if type(image) ~= "string" then error("image_exists: image must be a string", 2) end
        local entry, reason, detail = enter({ op = "image_exists", image = image, ok = true })
        if not entry then return nil, reason, detail end
        return images[image] == true or opts.any_image == true
    end

    --- Pulls image from its (fake) registry: present afterwards when it is
    --- one of opts.registry (or opts.any_image); else nil, "no such image".
    --- -> true, progress text | nil, reason, detail
    function rt.pull(image)
        if type(image) ~= "string" or image == "" then error("pull: image must be a non-empty string", 2) end
        local entry, reason, detail = enter({ op = "pull", image = image, ok = true })
        if not entry then return nil, reason, detail end
        if not registry[image] and not opts.any_image then
            return fail(entry, "no such image", image .. ": manifest unknown")
        end
        images[image] = true
        return true, "Writing manifest to image destination\n"
    end

    --- A stream of container events (see Events at the top), or nil, reason, detail.
    function rt.events()
        local entry, reason, detail = enter({ op = "events", ok = true })
        if not entry then return nil, reason, detail end
        local st = setmetatable({ queue = {}, closed = false, ended = false }, Stream)
        streams[st] = true
        return st
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

    --- The container's process dies with exit_code (default 137) now;
    --- kopts.oom: it was the OOM killer (inspect's oom = true).
    function rt.kill(name, exit_code, kopts)
        settle()
        local c = containers[name]
        if not c then return nil, "no such container" end
        if c.state == "running" then
            emit(c, "kill")
            exited(c, exit_code or 137, now(), kopts and kopts.oom)
        else
            c.state, c.exit_code = "exited", exit_code or 137
        end
        return true
    end

    --- Every start of container `name` (the running one now, and each later
    --- run or start) exits with exit_code after `after` seconds. Without
    --- exit_code the rule is cleared.
    function rt.crash_loop(name, exit_code, after)
        check_name("crash_loop", name)
        settle()
        local c = containers[name]
        if exit_code == nil then
            crash_rules[name] = nil
            if c then c.due = nil end
        else
            if type(exit_code) ~= "number" or type(after) ~= "number" or after < 0 then
                error("crash_loop: need an exit code and seconds >= 0", 2)
            end
            crash_rules[name] = { code = exit_code, after = after }
            if c and c.state == "running" then c.due, c.due_code = now() + after, exit_code end
        end
        notify() -- a waiting stream recomputes when to wake
        return true
    end

    --- podman lost its state: the container (nil: every container) is gone, silently.
    function rt.vanish(name)
        settle()
        if name == nil then
            for n in pairs(containers) do containers[n] = nil end
        else
            containers[name] = nil
        end
        return true
    end

    --- Puts a raw event on every open stream, as podman's would tell it (a late
    --- line of a container replaced since, say): { name=, id=, status=, exit_code= }.
    function rt.tell(ev)
        emit({ name = ev.name, id = ev.id, image = ev.image, labels = ev.labels }, ev.status, ev.exit_code)
        return true
    end

    --- The podman events child died: every open stream ends after what it queued.
    function rt.end_events(detail)
        for st in pairs(streams) do
            if not st.closed then
                st.ended = true
                st.detail = detail or "podman events exited with status 1"
            end
            streams[st] = nil
            wake(st)
        end
        return true
    end

    --- The podman events child stops producing (hangs) while its streams stay
    --- open: events from now on are lost, until mute_events(false).
    function rt.mute_events(on) muted = on ~= false end

    --- How many streams are open.
    function rt.streams()
        local n = 0
        for st in pairs(streams) do if not st.closed then n = n + 1 end end
        return n
    end

    --- Sets a container's state directly ("created", "exited", "running", …).
    function rt.set_state(name, state, exit_code)
        local c = containers[name]
        if not c then return nil, "no such container" end
        c.state = state
        if exit_code then c.exit_code = exit_code end
        c.due = nil
        if state == "running" then
            c.started_at = started()
            started_now(c)
            notify() -- a crash may now be due: waiting streams recompute
        end
        return true
    end

    --- Adds a container as if it had been created earlier (no op logged).
    function rt.add_container(rec)
        check_name("add_container", rec and rec.name)
        return add_container(rec).id
    end

    function rt.add_image(image) images[image] = true end
    --- image can be pulled (rt.pull) from now on.
    function rt.publish_image(image) registry[image] = true end
    function rt.remove_image(image) images[image] = nil end

    --- Every raw container sorted by name, without logging an op (for probes).
    function rt.all()
        settle()
        local names = {}
        for name in pairs(containers) do names[#names + 1] = name end
        table.sort(names)
        local out = {}
        for i, name in ipairs(names) do out[i] = containers[name] end
        return out
    end

    --- The raw container (shared, not a copy) or nil: for tests.
    function rt.container(name)
        settle()
        return containers[name]
    end

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
    for _, image in ipairs(opts.registry or {}) do registry[image] = true end
    for _, c in ipairs(opts.containers or {}) do rt.add_container(c) end
    return rt
end

return M
