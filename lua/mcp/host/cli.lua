-- mcp.host.cli: the commands of `mcp-agent` (SPEC §2), run by the C host as
-- the main task. The command table (names, flags, argument counts, registry
-- use) is src/cli/commands.c: C parses the arguments by it once and calls
-- main(name, args) with them already checked, so a handler here is
-- M.NAME(agent, cmd) with cmd = { name=, flags = { json = true,
-- since = "5m", ... }, args = { positional... } } and returns the exit code:
-- 0 done, 1 goal not reached, 2 usage, config, definition or policy error.
local agentlib = require("mcp.host.agent")
local policies = require("mcp.host.policies")

local M = {}

local OK, GOAL, USAGE = 0, 1, 2

-- Lists in reports that must stay JSON arrays even when empty.
local ARRAY_KEYS = { stages = true, services = true, components = true, unknown = true,
                     recovered = true, already_running = true, skipped = true, failed = true,
                     planned = true, warnings = true, ports = true, routes = true, events = true }

local function say(fmt, ...)
    io.stdout:write(string.format(fmt, ...), "\n")
end

local function complain(fmt, ...)
    io.stderr:write("mcp-agent: ", string.format(fmt, ...), "\n")
end

--- The arguments as src/cli/args.c hands them over: each flag given as
--- "--name" or "--name=value", then "--", then the positional ones.
--- (Already checked against the command table: nothing to refuse here.)
local function decode(list)
    local flags, args = {}, {}
    local i = 1
    while i <= #list and list[i] ~= "--" do
        local name, value = list[i]:match("^%-%-([^=]+)=(.*)$")
        if name then flags[name] = value else flags[list[i]:sub(3)] = true end
        i = i + 1
    end
    for j = i + 1, #list do args[#args + 1] = list[j] end
    return flags, args
end

--- "web/api" -> "web", "api"; "web" -> "web", nil.
local function split_target(arg)
    local service, component = arg:match("^([^/]+)/(.+)$")
    return service or arg, component
end

-- Service definitions and eval scripts are small; a bound keeps a wrong
-- argument such as /dev/zero from eating all memory.
local MAX_INPUT_BYTES = 4 * 1024 * 1024

--- The contents of path | nil, message naming path (missing, a directory,
--- unreadable, or larger than MAX_INPUT_BYTES).
local function read_file(path)
    local f, err = io.open(path, "r")
    if not f then return nil, err end
    local text, rerr = f:read(MAX_INPUT_BYTES + 1)
    f:close()
    if rerr then return nil, string.format("%s: %s", path, rerr) end
    text = text or "" -- an empty file reads as nil
    if #text > MAX_INPUT_BYTES then
        return nil, string.format("%s: larger than %d bytes", path, MAX_INPUT_BYTES)
    end
    return text
end

local function traceback(err)
    return debug.traceback(tostring(err), 2)
end


-- the backend: a running daemon, or the registry here --------------------------

--- The backend for an operation, or nil after saying why (exit USAGE).
local function backend_for(agent, what)
    local b, err = require("mcp.host.backend").connect(agent)
    if not b then complain("%s: %s", what, err) end
    return b
end

-- What an operation's failure kind means for the exit code; any other kind
-- (runtime, registry, unavailable, ...) is a goal not reached.
local EXIT_OF_KIND = { invalid = USAGE, ["not found"] = USAGE, policy = USAGE }

--- Exit code for a failed backend call, after saying why.
local function failed(what, kind, message)
    complain("%s: %s", what, tostring(message or kind))
    return EXIT_OF_KIND[kind] or GOAL
end

-- recover ------------------------------------------------------------------

function M.recover(agent, cmd)
    local flags = cmd.flags
    local b = backend_for(agent, "recover")
    if not b then return USAGE end
    local report, kind, detail = b.recover(flags["dry-run"] or false)
    if not report then
        if kind == "policy" then agent.log.error("recover policy failed", { error = detail }) end
        return failed("recover", kind, detail)
    end
    local report_lib = require("mcp.report")
    if flags.json then
        io.stdout:write(report_lib.json(report), "\n")
    else
        io.stdout:write(report_lib.text(report), "\n")
    end
    return report_lib.exit_code(report)
end

-- boot ---------------------------------------------------------------------

local function fmt_seconds(s)
    return s and string.format("%.3fs", s) or "-"
end

local function boot_text(report)
    for _, st in ipairs(report.stages) do
        local state = st.cancelled and "cancelled" or (st.healthy and "healthy" or "NOT healthy")
        say("stage %s%s: %s in %s", tostring(st.name), st.foundation and " (foundation)" or "", state,
            fmt_seconds(st.elapsed))
        for _, s in ipairs(st.services or {}) do
            if s.skipped then
                say("  %-20s skipped (%s)", s.service, s.skipped)
            elseif s.healthy then
                say("  %-20s healthy      attempts=%d restarts=%d time_to_healthy=%s", s.service,
                    s.attempts, s.restarts, fmt_seconds(s.time_to_healthy))
            else
                say("  %-20s NOT healthy  attempts=%d restarts=%d %s", s.service, s.attempts,
                    s.restarts, tostring(s.reason or ""))
            end
        end
        for _, u in ipairs(st.unknown or {}) do say("  %-20s unknown service (not in the registry)", u) end
    end
    if report.unstaged then
        local u = report.unstaged
        say("services in no stage: started %d, already running %d, skipped %d, failed %d",
            #(u.recovered or {}) + #(u.planned or {}), #(u.already_running or {}), #(u.skipped or {}),
            #(u.failed or {}))
    end
    say("boot %s", report.cancelled and "cancelled" or (report.healthy and "healthy" or "finished, NOT healthy"))
end

function M.boot(agent, cmd)
    local flags = cmd.flags
    local boot, err = policies.get("boot")
    if not boot then complain("%s", err); return USAGE end
    -- two boot sequences at once would fight over the same containers
    local b = backend_for(agent, "boot")
    if not b then return USAGE end
    if b.remote then
        complain("boot: a daemon is running on %s and runs the boot sequence itself; "
            .. "see `mcp-agent status`", b.socket)
        return USAGE
    end
    local stages = agent.config.boot or {}
    local ok, report = xpcall(boot.run, traceback, agent, stages, { dry_run = flags["dry-run"] or false })
    if not ok then
        agent.log.error("boot policy failed", { error = report })
        return USAGE
    end
    if type(report) ~= "table" then
        agent.log.error("boot policy returned no report", { got = type(report) })
        return USAGE
    end
    if flags.json then
        io.stdout:write(require("mcp.json").encode(report, ARRAY_KEYS), "\n")
    else
        boot_text(report)
    end
    return (report.healthy and not report.cancelled) and OK or GOAL
end

-- eval ---------------------------------------------------------------------

function M.eval(agent, cmd)
    local args, i = cmd.args, 1
    local chunk, chunkname, err
    if cmd.flags.e then
        chunk, err = load(cmd.flags.e, "=(eval -e)", "t")
        chunkname = "(eval -e)"
    else
        local path = args[1]
        if not path then complain("eval: need SCRIPT.lua or -e CODE"); return USAGE end
        local text, ferr = read_file(path)
        if not text then complain("eval: %s", ferr); return USAGE end
        chunk, err = load(text, "@" .. path, "t")
        chunkname = path
        i = 2
    end
    if not chunk then complain("eval: %s", err); return USAGE end
    local script_args = { [0] = chunkname }
    for j = i, #args do script_args[#script_args + 1] = args[j] end
    if agent.config.dry_run then
        -- every mutating primitive is wrapped (mcp.host.agent); the script
        -- cannot reach past them to the raw core
        debug.setupvalue(chunk, 1, require("mcp.dryrun").script_env(agent, script_args))
    else
        _G.agent = agent
        _G.arg = script_args
    end
    local results = table.pack(xpcall(chunk, traceback, table.unpack(script_args)))
    if not results[1] then
        complain("eval: %s", results[2])
        return GOAL
    end
    if math.type(results[2]) == "integer" then return results[2] end
    if results[2] == false then return GOAL end
    return OK
end

-- deploy -------------------------------------------------------------------

function M.deploy(agent, cmd)
    local files = cmd.args
    local allow_unknown = cmd.flags["allow-unknown"] or false
    -- Validate every file before storing any: a bad file changes nothing.
    local texts, parsed, unknown_count = {}, {}, 0
    for i, path in ipairs(files) do
        local text, err = read_file(path)
        if not text then complain("deploy: %s", err); return USAGE end
        local ok, _, detail, svc = agent.registry.validate(text, path)
        if not ok then complain("%s", detail); return USAGE end
        if #detail > 0 and not allow_unknown then
            for _, u in ipairs(detail) do complain("%s", u) end
            unknown_count = unknown_count + #detail
        end
        texts[i], parsed[i] = text, { svc = svc, unknown = detail }
    end
    if unknown_count > 0 then
        complain("deploy: refused, nothing stored: %d unknown key%s (fix %s, or deploy --allow-unknown)",
            unknown_count, unknown_count == 1 and "" or "s", unknown_count == 1 and "it" or "them")
        return USAGE
    end
    if cmd.flags["dry-run"] then
        local preview = require("mcp.host.preview")
        for i, path in ipairs(files) do
            say("%s:", path)
            for _, u in ipairs(parsed[i].unknown) do say("  warning: %s, ignored", u) end
            for _, line in ipairs(preview.lines(agent, parsed[i].svc)) do say("  %s", line) end
        end
        say("dry run: nothing stored, no container touched")
        return OK
    end
    local b = backend_for(agent, "deploy")
    if not b then return USAGE end
    local rc = OK
    for i, path in ipairs(files) do
        local resp, kind, detail = b.deploy(texts[i], path, { allow_unknown = allow_unknown })
        if not resp then return failed("deploy " .. path, kind, detail) end
        for _, m in ipairs(resp.messages or {}) do say("%s", m) end
        if not resp.ok then rc = GOAL end
    end
    return rc
end

-- start / stop / restart / rm ---------------------------------------------------

local function target_command(verb)
    return function(agent, cmd)
        local service, component = split_target(cmd.args[1])
        local b = backend_for(agent, verb)
        if not b then return USAGE end
        local resp, kind, detail = b.service_action(verb, service, component)
        if not resp then return failed(verb, kind, detail) end
        for _, w in ipairs(resp.warnings or {}) do say("warning: %s", w) end
        for _, r in ipairs(resp.results) do
            if r.ok then
                say("%s: %s", r.container, (r.detail and r.detail ~= "") and r.detail or verb)
            else
                say("%s: %s failed: %s", r.container, verb, r.error)
            end
        end
        return resp.ok and OK or GOAL
    end
end

M.start = target_command("start")
M.stop = target_command("stop")
M.restart = target_command("restart")

function M.rm(agent, cmd)
    local service, component = split_target(cmd.args[1])
    if component then complain("rm: takes a whole SERVICE, not %s", cmd.args[1]); return USAGE end
    local b = backend_for(agent, "rm")
    if not b then return USAGE end
    local resp, kind, detail = b.remove(service)
    if not resp then return failed("rm", kind, detail) end
    if not resp.ok then
        for _, r in ipairs(resp.results) do
            if not r.ok then say("%s: remove failed: %s", r.container, r.error) end
        end
        complain("rm: %s kept in the registry because a container could not be removed", resp.service)
        return GOAL
    end
    say("%s: removed", resp.service)
    return OK
end

-- events ------------------------------------------------------------------------

--- Seconds of a Go-style duration ("90s", "5m", "2h30m", "1.5h", "150ms") | nil.
local function duration_seconds(text)
    local units = { ns = 1e-9, us = 1e-6, ["µs"] = 1e-6, ms = 1e-3, s = 1, m = 60, h = 3600 }
    if text == "0" then return 0 end
    local total, rest = 0, text
    if rest == "" then return nil end
    while rest ~= "" do
        local num, unit, after = rest:match("^(%d+%.?%d*)(%a+)(.*)$")
        if not num then num, unit, after = rest:match("^(%d+%.?%d*)(µs)(.*)$") end
        if not num or not units[unit] then return nil end
        total = total + tonumber(num) * units[unit]
        rest = after
    end
    return total
end

--- RFC 3339 with milliseconds, UTC, of a time in ms since the epoch.
local function rfc3339_ms(ms)
    return os.date("!%Y-%m-%dT%H:%M:%S", ms // 1000) .. string.format(".%03dZ", ms % 1000)
end

--- An Event message (time_unix_ms, …) for JSON output: RFC 3339 `time` first.
local function event_json(e)
    return { time = rfc3339_ms(e.time_unix_ms), service = e.service, component = e.component or "",
             kind = e.kind, message = e.message, exit_code = e.exit_code or 0 }
end

--- A registry event row as an Event message.
local function event_message(e)
    return { id = e.id, time_unix_ms = math.floor(e.time * 1000 + 0.5), service = e.service or "",
             component = e.component or "", kind = e.kind, message = e.message or "",
             exit_code = e.exit_code or 0 }
end

local function print_event(e, json)
    if json then
        io.stdout:write(require("mcp.json").encode(event_json(e)), "\n")
    else
        local where = e.service ~= "" and e.service or "(node)"
        if e.component ~= "" and e.component ~= e.service then where = where .. "/" .. e.component end
        local code = (e.kind == "died" or e.exit_code ~= 0) and (" exit_code=" .. tostring(e.exit_code)) or ""
        say("%s %-16s %-15s %s%s", rfc3339_ms(e.time_unix_ms), where, e.kind, e.message, code)
    end
    io.stdout:flush()
end

-- How often `events --follow` looks at the registry for new events (no
-- daemon), how long one wait on the daemon's stream lasts before it is simply
-- renewed, and how many events it prints at most before following.
M.FOLLOW_POLL = 0.25
M.FOLLOW_WAIT = 5
M.EVENTS_LIMIT = 10000

--- What tells two events apart in the output (the stream carries no ids).
local function event_key(e)
    return table.concat({ e.service, e.component, e.kind, e.message, tostring(e.exit_code) }, "\0")
end

--- Follows the daemon's WatchEvents from since_ms (inclusive). seen counts
--- the lines already printed at exactly since_ms, by event_key: the stream
--- repeats those and they are skipped, so a line stored in the same
--- millisecond after the backlog was read is neither lost nor doubled.
--- Ctrl-C/SIGTERM -> OK; the daemon ending the stream (it stopped or died) ->
--- GOAL with a message: following a daemon that is gone would print nothing
--- for ever, and after a restart `events --follow` again shows what was missed.
local function follow_daemon(socket, service, since_ms, seen, json, stop)
    local core = require("mcp.core")
    local stream <close>, reason, detail = core.api.watch(socket, "/mcp.agent.v1.AgentService/WatchEvents",
        { service = service or "", since_unix_ms = since_ms })
    if not stream then
        complain("events: cannot follow the daemon on %s: %s (%s)", socket, tostring(detail), tostring(reason))
        return GOAL
    end
    if stop.stopped then return OK end
    stop.stream = stream
    while true do
        local e, why, status, message = stream:next(M.FOLLOW_WAIT)
        if e then
            local key = event_key(e)
            if e.time_unix_ms <= since_ms and (seen[key] or 0) > 0 then
                seen[key] = seen[key] - 1
            else
                print_event(e, json)
            end
        elseif why == "cancelled" then
            return OK
        elseif why ~= "timeout" then
            local name = "status " .. tostring(status)
            for k, v in pairs(core.api.codes) do if v == status then name = k end end
            complain("events: the daemon on %s ended the stream (%s: %s)", socket, name, tostring(message))
            return GOAL
        end
    end
end

--- Ctrl-C/SIGTERM end `events --follow` as done (exit 0), not as a command
--- cancelled half-way: a task takes the signal, closes the stream and says
--- stop. (SIGHUP is ignored.)
local function follow_stopper(agent)
    local core = require("mcp.core")
    local stop = { stopped = false }
    agent.task.spawn(function()
        local sig
        repeat sig = core.signals.wait() until sig ~= "SIGHUP"
        stop.stopped = true
        if stop.stream then stop.stream:close() end
    end)
    return stop
end

function M.events(agent, cmd)
    local service = cmd.args[1]
    local since
    if cmd.flags.since then
        local secs = duration_seconds(cmd.flags.since)
        if not secs then
            complain("events: --since %s is not a duration (e.g. 90s, 5m, 2h30m)", cmd.flags.since)
            return USAGE
        end
        since = agent.clock.wallclock() - secs
    end
    if service and not agent.registry.service(service) and #agent.registry.events(service, 1) == 0 then
        complain("events: no such service: %s", service)
        return USAGE
    end
    local start_ms = math.floor(agent.clock.wallclock() * 1000)
    -- The registry is read here even beside a daemon: it is its single
    -- writer, and SQLite's WAL lets readers in at any time.
    local rows = agent.registry.events(service, M.EVENTS_LIMIT, since) or {}
    local last, newest_ms, seen = 0, nil, {}
    for i = #rows, 1, -1 do
        local e = event_message(rows[i])
        print_event(e, cmd.flags.json)
        last = math.max(last, rows[i].id)
        if not newest_ms or e.time_unix_ms > newest_ms then newest_ms, seen = e.time_unix_ms, {} end
        if e.time_unix_ms == newest_ms then seen[event_key(e)] = (seen[event_key(e)] or 0) + 1 end
    end
    if not cmd.flags.follow then return OK end
    local stop = follow_stopper(agent)
    local b = backend_for(agent, "events")
    if not b then return USAGE end
    if b.remote then
        return follow_daemon(b.socket, service, newest_ms or start_ms, seen, cmd.flags.json, stop)
    end
    if #rows == 0 then
        local newest = agent.registry.events(nil, 1)
        last = newest[1] and newest[1].id or 0
    end
    while true do
        for _, e in ipairs(agent.registry.events_after(last, service, 1000) or {}) do
            print_event(event_message(e), cmd.flags.json)
            last = e.id
        end
        if not agent.clock.sleep(M.FOLLOW_POLL) or stop.stopped then return OK end
    end
end

-- status / ls ------------------------------------------------------------------

local function port_text(ports)
    local parts = {}
    for _, p in ipairs(ports or {}) do
        parts[#parts + 1] = string.format("%s:%s->%s/%s", p.host_ip ~= "" and p.host_ip or "0.0.0.0",
            tostring(p.host_port), tostring(p.container_port), p.protocol or "tcp")
    end
    return table.concat(parts, ",")
end

local function print_status(s)
    say("%s%s", s.name, s.active and "" or " (inactive)")
    for _, c in ipairs(s.components) do
        say("  %-24s desired=%-8s observed=%-8s %s%s", c.container, c.desired_state,
            c.observed_state, port_text(c.ports), c.ok and "" or "  <- differs")
        -- what the supervisor makes of it (SPEC §10)
        if (c.restarts or 0) > 0 or (c.state and c.state ~= "" and c.state ~= c.observed_state) then
            say("    state=%s restarts=%d last_exit_code=%d%s", c.state ~= "" and c.state or c.observed_state,
                c.restarts or 0, c.last_exit_code or 0,
                (c.last_error and c.last_error ~= "") and (" last_error=" .. c.last_error) or "")
        end
        for _, r in ipairs(c.routes) do
            local listen = (r.port and r.port ~= 0) and r.port or r.host_port
            say("    route %s: %s 127.0.0.1:%s -> %s %s%s%s", r.name, r.mode ~= "" and r.mode or "l4",
                tostring(r.host_port ~= 0 and r.host_port or "-"), tostring(listen or "-"),
                r.hostname or "", r.registered and " (registered)" or "",
                (r.cert_expires_at and r.cert_expires_at ~= "") and (" cert expires " .. r.cert_expires_at) or "")
        end
    end
    for _, e in ipairs(s.events) do
        say("    %s %s%s: %s", os.date("!%Y-%m-%dT%H:%M:%SZ", e.time_unix_ms // 1000), e.kind,
            (e.component and e.component ~= "") and ("/" .. e.component) or "", e.message)
    end
end

local function print_boot_progress(boot)
    say("boot in progress:")
    for _, st in ipairs(boot.stages) do
        local healthy = 0
        for _, s in ipairs(st.services) do if s.healthy then healthy = healthy + 1 end end
        say("  stage %-16s %-10s %d/%d healthy  %.1fs", st.name, st.state, healthy, #st.services,
            st.elapsed_seconds)
    end
end

function M.status(agent, cmd)
    local flags, pos = cmd.flags, cmd.args
    local b = backend_for(agent, "status")
    if not b then return USAGE end
    local services, err
    if pos[1] then
        local st, kind, detail = b.status(pos[1])
        if not st then return failed("status", kind, detail) end
        services = { st }
        err = st.runtime_error ~= "" and st.runtime_error or nil
    else
        local all, kind, detail = b.status_all()
        if not all then return failed("status", kind, detail) end
        services, err = all, kind
    end
    -- a daemon that is still booting says how far it got
    local boot = b.boot_status and b.boot_status()
    if flags.json then
        for _, svc in ipairs(services) do
            for i, e in ipairs(svc.events or {}) do svc.events[i] = event_json(e) end
        end
        io.stdout:write(require("mcp.json").encode({ services = services, runtime_error = err or "",
            boot = boot }, ARRAY_KEYS), "\n")
    else
        if boot and not boot.boot_done then print_boot_progress(boot) end
        if err then say("warning: cannot list containers: %s", err) end
        for _, s in ipairs(services) do print_status(s) end
    end
    for _, s in ipairs(services) do
        for _, c in ipairs(s.components) do
            if not c.ok then return GOAL end
        end
    end
    return OK
end

function M.ls(agent, cmd)
    local flags = cmd.flags
    local b = backend_for(agent, "ls")
    if not b then return USAGE end
    local resp, kind, detail = b.list()
    if not resp then return failed("ls", kind, detail) end
    if flags.json then
        io.stdout:write(require("mcp.json").encode(resp, ARRAY_KEYS), "\n")
        return OK
    end
    if resp.runtime_error ~= "" then say("warning: cannot list containers: %s", resp.runtime_error) end
    say("%-20s %-8s %s", "SERVICE", "ACTIVE", "COMPONENTS (observed/desired)")
    for _, s in ipairs(resp.services) do
        local parts = {}
        for _, c in ipairs(s.components) do
            parts[#parts + 1] = string.format("%s=%s/%s", c.name, c.observed_state, c.desired_state)
        end
        say("%-20s %-8s %s", s.name, tostring(s.active), table.concat(parts, " "))
    end
    return OK
end

-- run ---------------------------------------------------------------------------

function M.run(agent, cmd)
    return require("mcp.host.daemon").run(agent, cmd.args)
end

-- snapshot / check ----------------------------------------------------------------

function M.snapshot(agent, cmd)
    local dest = cmd.args[1]
    if not dest then
        dest = string.format("%s.snapshot-%s", agent.config.db_path or "mcp-agent.db",
            os.date("!%Y%m%dT%H%M%SZ"))
    end
    local ok, _, detail = agent.registry.snapshot(dest)
    if not ok then complain("snapshot: %s", detail); return GOAL end
    say("%s", dest)
    return OK
end

--- check --lint: luacheck over [policy] dir, when it is installed.
--- -> exit code (OK when there is nothing to lint or no luacheck)
local function lint(agent)
    local dir = agent.config.policy_dir
    if not dir or dir == "" then
        say("lint: no [policy] dir configured, nothing to lint")
        return OK
    end
    local luacheck = require("mcp.host.runner").which("luacheck")
    if not luacheck then
        say("lint: luacheck is not installed (Debian: apt-get install lua-check); skipped")
        return OK
    end
    -- a policy is plain Lua 5.4 in an environment over _G; `agent` is an
    -- argument. Only the policy dir's own .luacheckrc applies, never one
    -- found above the current directory.
    local argv = { luacheck, "--std", "lua54", "--codes", "--no-color" }
    local rcfile = dir .. "/.luacheckrc"
    local f = io.open(rcfile, "r")
    if f then f:close(); argv[#argv + 1] = "--config=" .. rcfile else argv[#argv + 1] = "--no-config" end
    argv[#argv + 1] = "--"
    argv[#argv + 1] = dir
    io.stdout:flush()
    local code, reason, detail = require("mcp.core").exec.run(argv, { timeout = 120 })
    if not code then complain("lint: %s (%s)", tostring(detail), tostring(reason)); return GOAL end
    if code == 0 then say("lint: %s: no warnings", dir); return OK end
    return code == 1 and GOAL or USAGE
end

function M.check(agent, cmd)
    local rc = OK
    local flags = cmd and cmd.flags or {}
    local paths = require("mcp.core").paths
    say("lua library: %s (%s)", paths.lua, paths.origin)
    say("built-in policies: %s", paths.builtin_policies)
    for _, name in ipairs(policies.NAMES) do
        local mod, err = policies.get(name)
        if mod then
            say("policy %s: ok", name)
        else
            complain("%s", err)
            rc = USAGE
        end
    end
    local cfg = agent.config.config_path or "(built-in defaults)"
    local warnings = agent.config.warnings or 0
    if rc == OK and flags.strict and warnings > 0 then
        complain("configuration %s: %d warning%s, errors under --strict", cfg, warnings,
            warnings == 1 and "" or "s")
        rc = GOAL
    end
    if rc == OK and flags.lint then rc = lint(agent) end
    if rc == OK then
        say("configuration %s and policies: test is successful", cfg)
    else
        complain("configuration %s or policies: test failed", cfg)
    end
    return rc
end

-- test / show ---------------------------------------------------------------------

function M.test(agent, cmd)
    return require("mcp.host.runner").test(agent, cmd)
end

function M.show(agent, cmd)
    return require("mcp.host.show").show(agent, cmd)
end

-- dispatch ------------------------------------------------------------------------

--- Called by the C host: name is a command of the table, args as decode()
--- reads them.
function M.main(name, args)
    local handler = M[name]
    if type(handler) ~= "function" or name == "main" then
        complain("%s: not available in this build", tostring(name))
        return USAGE
    end
    local flags, positional = decode(args)
    local agent = agentlib.build()
    return handler(agent, { name = name, flags = flags, args = positional })
end

return M
