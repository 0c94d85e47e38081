-- mcp.host.cli: the commands of `mcp-agent` (SPEC §2), run by the C host as
-- the main task. Each returns the exit code: 0 done, 1 goal not reached,
-- 2 usage, config, definition or policy error.
local agentlib = require "mcp.host.agent"
local actions = require "mcp.host.actions"

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

--- Splits args into flags (from `allowed`) and positional arguments.
--- Returns flags, positional | nil, message.
local function parse(args, allowed)
    local flags, pos = {}, {}
    local only_pos = false
    for _, a in ipairs(args) do
        if only_pos or a:sub(1, 2) ~= "--" then
            pos[#pos + 1] = a
        elseif a == "--" then
            only_pos = true
        else
            local name = a:sub(3)
            if not allowed[name] then return nil, "unknown option " .. a end
            flags[name] = true
        end
    end
    return flags, pos
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

--- Loads a policy by name (operator dir, then built-in) and checks it has
--- the functions the agent calls. Returns the module | nil, message.
local function load_policy(name, required)
    local ok, mod = pcall(require, name)
    if not ok then return nil, tostring(mod) end
    if type(mod) ~= "table" then
        return nil, string.format("policy %s must return a table, got %s", name, type(mod))
    end
    for _, fn in ipairs(required or {}) do
        if type(mod[fn]) ~= "function" then
            return nil, string.format("policy %s has no function %s (required)", name, fn)
        end
    end
    return mod
end

local REQUIRED = { recover = { "run" }, boot = { "run" }, backoff = {} }

-- recover ------------------------------------------------------------------

function M.recover(agent, args)
    local flags, pos = parse(args, { ["dry-run"] = true, json = true })
    if not flags then complain("recover: %s", pos); return USAGE end
    if #pos > 0 then complain("recover: unexpected argument %s", pos[1]); return USAGE end
    local recover, err = load_policy("recover", REQUIRED.recover)
    if not recover then complain("%s", err); return USAGE end
    local report_lib = require "mcp.report"
    local ok, report = xpcall(recover.run, traceback, agent, { dry_run = flags["dry-run"] or false })
    if not ok then
        agent.log.error("recover policy failed", { error = report })
        return USAGE
    end
    if type(report) ~= "table" then
        agent.log.error("recover policy returned no report", { got = type(report) })
        return USAGE
    end
    report.dry_run = flags["dry-run"] or false
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

function M.boot(agent, args)
    local flags, pos = parse(args, { ["dry-run"] = true, json = true })
    if not flags then complain("boot: %s", pos); return USAGE end
    if #pos > 0 then complain("boot: unexpected argument %s", pos[1]); return USAGE end
    local boot, err = load_policy("boot", REQUIRED.boot)
    if not boot then complain("%s", err); return USAGE end
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

function M.eval(agent, args)
    local i = 1
    if args[i] == "--dry-run" then i = i + 1 end
    local chunk, chunkname, err
    if args[i] == "-e" then
        local code = args[i + 1]
        if not code then complain("eval: -e needs code"); return USAGE end
        chunk, err = load(code, "=(eval -e)", "t")
        chunkname = "(eval -e)"
        i = i + 2
    else
        local path = args[i]
        if not path then complain("eval: need SCRIPT.lua or -e CODE"); return USAGE end
        local text, ferr = read_file(path)
        if not text then complain("eval: %s", ferr); return USAGE end
        chunk, err = load(text, "@" .. path, "t")
        chunkname = path
        i = i + 1
    end
    if not chunk then complain("eval: %s", err); return USAGE end
    local script_args = { [0] = chunkname }
    for j = i, #args do script_args[#script_args + 1] = args[j] end
    _G.agent = agent
    _G.arg = script_args
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

function M.deploy(agent, args)
    local flags, files = parse(args, {})
    if not flags then complain("deploy: %s", files); return USAGE end
    if #files == 0 then complain("deploy: need at least one FILE.toml"); return USAGE end
    -- Validate every file before storing any: a bad file changes nothing.
    local texts = {}
    for i, path in ipairs(files) do
        local text, err = read_file(path)
        if not text then complain("deploy: %s", err); return USAGE end
        local ok, _, detail = agent.registry.validate(text, path)
        if not ok then complain("%s", detail); return USAGE end
        texts[i] = text
    end
    local rc = OK
    for i, path in ipairs(files) do
        local svc, reason, detail = agent.registry.deploy(texts[i], path)
        if not svc then
            complain("deploy %s: %s", path, detail or reason)
            return reason == "invalid" and USAGE or GOAL
        end
        agent.registry.event(svc.name, nil, "deployed", "definition stored from " .. path)
        if svc.active then
            local results = actions.each(agent, svc.components, function(comp)
                if comp.desired_state == "running" then
                    return actions.run_component(agent, svc, comp)
                end
                return actions.stop_component(agent, comp)
            end)
            for j, r in ipairs(results) do
                local comp = svc.components[j]
                if r.ok then
                    say("%s: %s", comp.container, comp.desired_state == "running" and "started" or "stopped")
                else
                    rc = GOAL
                    say("%s: failed: %s", comp.container, tostring(r.err))
                    agent.registry.event(svc.name, comp.name, "failed", "deploy: " .. tostring(r.err))
                end
            end
        else
            say("%s: stored (inactive)", svc.name)
        end
    end
    return rc
end

-- start / stop / restart / rm ---------------------------------------------------

local function target_command(verb, state, work)
    return function(agent, args)
        local flags, pos = parse(args, {})
        if not flags then complain("%s: %s", verb, pos); return USAGE end
        if #pos ~= 1 then complain("%s: need exactly one SERVICE[/COMPONENT]", verb); return USAGE end
        local svc, comps, cname = actions.resolve(agent, pos[1])
        if not svc then complain("%s: %s", verb, comps); return USAGE end
        if state then agent.registry.set_desired(svc.name, cname, state) end
        if state == "running" and not svc.active then agent.registry.set_active(svc.name, true) end
        local rc = OK
        for j, r in ipairs(actions.each(agent, comps, function(c) return work(agent, svc, c) end)) do
            local comp = comps[j]
            if r.ok then
                say("%s: %s", comp.container, type(r.value) == "string" and r.value or verb .. (verb:sub(-1) == "p" and "ped" or "ed"))
                agent.registry.event(svc.name, comp.name, verb, verb .. " by operator")
            else
                rc = GOAL
                say("%s: %s failed: %s", comp.container, verb, tostring(r.err))
                agent.registry.event(svc.name, comp.name, "failed", verb .. ": " .. tostring(r.err))
            end
        end
        return rc
    end
end

M.start = target_command("start", "running", actions.start_component)
M.stop = target_command("stop", "stopped", function(agent, _, comp)
    return actions.stop_component(agent, comp)
end)
M.restart = target_command("restart", "running", function(agent, svc, comp)
    local ok, err = actions.stop_component(agent, comp)
    if not ok then return nil, err end
    return actions.start_component(agent, svc, comp)
end)

function M.rm(agent, args)
    local flags, pos = parse(args, {})
    if not flags then complain("rm: %s", pos); return USAGE end
    if #pos ~= 1 or pos[1]:find("/") then complain("rm: need exactly one SERVICE"); return USAGE end
    local svc = agent.registry.service(pos[1])
    if not svc then complain("rm: no such service: %s", pos[1]); return USAGE end
    local rc = OK
    for j, r in ipairs(actions.each(agent, svc.components, function(c)
        local ok, reason, detail = agent.runtime.remove(c.container)
        if not ok then return nil, tostring(reason) .. (detail and (": " .. detail) or "") end
        return true
    end)) do
        if not r.ok then
            rc = GOAL
            say("%s: remove failed: %s", svc.components[j].container, tostring(r.err))
        end
    end
    if rc ~= OK then
        complain("rm: %s kept in the registry because a container could not be removed", svc.name)
        return rc
    end
    agent.registry.delete(svc.name)
    say("%s: removed", svc.name)
    return OK
end

-- status / ls ------------------------------------------------------------------

local function observed_by_name(agent)
    local list, reason, detail = agent.runtime.list()
    if not list then return nil, tostring(reason) .. (detail and (": " .. detail) or "") end
    local by = {}
    for _, c in ipairs(list) do by[c.name] = c end
    return by
end

local function port_text(c)
    local parts = {}
    for _, p in ipairs(c and c.ports or {}) do
        parts[#parts + 1] = string.format("%s:%s->%s/%s", p.host_ip ~= "" and p.host_ip or "0.0.0.0",
            tostring(p.host_port), tostring(p.container_port), p.protocol or "tcp")
    end
    return table.concat(parts, ",")
end

local function status_rows(agent, services)
    local observed, err = observed_by_name(agent)
    local rows = {}
    for _, svc in ipairs(services) do
        local srow = { name = svc.name, active = svc.active, components = {} }
        for _, comp in ipairs(svc.components) do
            local c = observed and observed[comp.container]
            local routes = {}
            for _, r in ipairs(comp.routes or {}) do
                routes[#routes + 1] = { name = r.name, port = r.port, host_port = r.host_port,
                                        mode = r.mode, hostname = r.hostname }
            end
            srow.components[#srow.components + 1] = {
                name = comp.name, container = comp.container, image = comp.image,
                desired_state = comp.desired_state,
                observed_state = observed and (c and c.state or "missing") or "unknown",
                ports = c and c.ports or {}, routes = routes,
                ok = observed ~= nil
                    and ((comp.desired_state == "running") == (c ~= nil and c.state == "running")),
            }
        end
        rows[#rows + 1] = srow
    end
    return rows, err
end

--- The status rows as JSON: {"services": [...], ...extra}, every list an
--- array even when empty. Does not modify rows.
local function json_rows(rows, extra)
    local doc = { services = rows }
    for k, v in pairs(extra or {}) do doc[k] = v end
    return require("mcp.json").encode(doc, ARRAY_KEYS)
end

function M.status(agent, args)
    local flags, pos = parse(args, { json = true })
    if not flags then complain("status: %s", pos); return USAGE end
    if #pos > 1 then complain("status: at most one SERVICE"); return USAGE end
    local services
    if pos[1] then
        local svc = agent.registry.service(pos[1])
        if not svc then complain("status: no such service: %s", pos[1]); return USAGE end
        services = { svc }
    else
        services = agent.registry.services()
    end
    local rows, err = status_rows(agent, services)
    for _, s in ipairs(rows) do s.events = agent.registry.events(s.name, 5) end
    if flags.json then
        io.stdout:write(json_rows(rows, { runtime_error = err }), "\n")
    else
        if err then say("warning: cannot list containers: %s", err) end
        for _, s in ipairs(rows) do
            say("%s%s", s.name, s.active and "" or " (inactive)")
            for _, c in ipairs(s.components) do
                say("  %-24s desired=%-8s observed=%-8s %s%s", c.container, c.desired_state,
                    c.observed_state, port_text({ ports = c.ports }), c.ok and "" or "  <- differs")
                for _, r in ipairs(c.routes) do
                    say("    route %s: %s 127.0.0.1:%s -> %s %s", r.name, r.mode or "l4",
                        tostring(r.host_port or "-"), tostring(r.port or r.host_port or "-"), r.hostname or "")
                end
            end
            for _, e in ipairs(s.events) do
                say("    %s %s%s: %s", os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(e.time)), e.kind,
                    e.component and ("/" .. e.component) or "", e.message)
            end
        end
    end
    for _, s in ipairs(rows) do
        for _, c in ipairs(s.components) do
            if not c.ok then return GOAL end
        end
    end
    return OK
end

function M.ls(agent, args)
    local flags, pos = parse(args, { json = true })
    if not flags then complain("ls: %s", pos); return USAGE end
    if #pos > 0 then complain("ls: unexpected argument %s", pos[1]); return USAGE end
    local rows, err = status_rows(agent, agent.registry.services())
    if flags.json then
        io.stdout:write(json_rows(rows, { runtime_error = err }), "\n")
        return OK
    end
    if err then say("warning: cannot list containers: %s", err) end
    say("%-20s %-8s %s", "SERVICE", "ACTIVE", "COMPONENTS (observed/desired)")
    for _, s in ipairs(rows) do
        local parts = {}
        for _, c in ipairs(s.components) do
            parts[#parts + 1] = string.format("%s=%s/%s", c.name, c.observed_state, c.desired_state)
        end
        say("%-20s %-8s %s", s.name, tostring(s.active), table.concat(parts, " "))
    end
    return OK
end

-- snapshot / check ----------------------------------------------------------------

function M.snapshot(agent, args)
    local flags, pos = parse(args, {})
    if not flags then complain("snapshot: %s", pos); return USAGE end
    local dest = pos[1]
    if not dest then
        dest = string.format("%s.snapshot-%s", agent.config.db_path or "mcp-agent.db",
            os.date("!%Y%m%dT%H%M%SZ"))
    end
    local ok, _, detail = agent.registry.snapshot(dest)
    if not ok then complain("snapshot: %s", detail); return GOAL end
    say("%s", dest)
    return OK
end

function M.check(agent, args)
    local flags, pos = parse(args, {})
    if not flags then complain("check: %s", pos); return USAGE end
    local rc = OK
    for _, name in ipairs({ "recover", "boot", "backoff" }) do
        local mod, err = load_policy(name, REQUIRED[name])
        if mod then
            say("policy %s: ok", name)
        else
            complain("%s", err)
            rc = USAGE
        end
    end
    local cfg = agent.config.config_path or "(built-in defaults)"
    if rc == OK then
        say("configuration %s and policies: test is successful", cfg)
    else
        complain("configuration %s or policies: test failed", cfg)
    end
    return rc
end

-- dispatch ------------------------------------------------------------------------

function M.main(name, args)
    local handler = M[name]
    if type(handler) ~= "function" or name == "main" then
        complain("unknown command %s", tostring(name))
        return USAGE
    end
    local agent = agentlib.build()
    return handler(agent, args)
end

return M
