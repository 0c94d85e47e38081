-- mcp.dryrun: wraps an agent.runtime so that mutating calls (run, start,
-- stop, remove) are reported as what would be done and not done; read-only
-- calls (list, inspect, image_exists, events) pass through.
--
--   local rt = require("mcp.dryrun").wrap(agent.runtime, { print = print })
--   rt.run(spec)   -- prints "would run metacrypt-api from localhost/x:1 ...", returns "dry-run"
--   rt.actions     -- { {op="run", name=..., text=...}, ... }

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
    -- Everything else (list, inspect, image_exists, events, test controls) passes through.
    return setmetatable(w, { __index = runtime })
end

return M
