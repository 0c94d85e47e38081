-- mcp.report: renders a recover report (docs/LUA_API.md) as human text and
-- as JSON. Arrays always encode as JSON arrays (`[]` when empty), keys are
-- emitted in a stable order.

local cjson = require("cjson")

local M = {}

M.LISTS = { "recovered", "already_running", "skipped", "failed", "planned" }

local OUTCOME_LABEL = {
    recovered = "recovered",
    already_running = "already running",
    skipped = "skipped",
    failed = "failed",
    planned = "planned",
}

local function entry_name(e)
    local svc = e.service or "?"
    local name = svc
    if e.component and e.component ~= svc then name = svc .. "/" .. e.component end
    if e.container and e.container ~= "" then name = name .. " (" .. e.container .. ")" end
    return name
end

local function sort_key(e)
    return (e.service or "") .. "\0" .. (e.component or "")
end

--- The report's entries of every outcome, one {outcome=, entry=} each,
--- sorted by service then component (then outcome order).
function M.entries(report)
    local rows = {}
    for rank, list in ipairs(M.LISTS) do
        for _, e in ipairs(report[list] or {}) do
            rows[#rows + 1] = { outcome = list, entry = e, rank = rank }
        end
    end
    table.sort(rows, function(a, b)
        local ka, kb = sort_key(a.entry), sort_key(b.entry)
        if ka ~= kb then return ka < kb end
        return a.rank < b.rank
    end)
    return rows
end

--- "recovered 2, already running 3, skipped 1, failed 0" (plus ", planned N"
--- when the report holds a plan).
function M.summary(report)
    local function n(k) return #(report[k] or {}) end
    local s = string.format("recovered %d, already running %d, skipped %d, failed %d",
        n("recovered"), n("already_running"), n("skipped"), n("failed"))
    if n("planned") > 0 or report.dry_run then s = s .. string.format(", planned %d", n("planned")) end
    return s
end

--- Human text: one line per container with its outcome (and reason or
--- planned action), then the warnings, then the summary line (no trailing
--- newline: the caller ends the line).
function M.text(report)
    local lines = {}
    for _, row in ipairs(M.entries(report)) do
        local e = row.entry
        local label = OUTCOME_LABEL[row.outcome]
        if row.outcome == "planned" then label = "would " .. (e.action or "run") end
        local line = string.format("%-16s %s", label, entry_name(e))
        if e.reason and e.reason ~= "" then line = line .. ": " .. e.reason end
        lines[#lines + 1] = line
    end
    for _, w in ipairs(report.warnings or {}) do
        lines[#lines + 1] = "warning: " .. tostring(w)
    end
    lines[#lines + 1] = M.summary(report)
    return table.concat(lines, "\n")
end

-- Encodes a flat record with sorted keys (values: strings, numbers, booleans).
local function encode_record(t)
    local keys = {}
    for k in pairs(t) do keys[#keys + 1] = k end
    table.sort(keys)
    local parts = {}
    for _, k in ipairs(keys) do
        local v = t[k]
        local tv = type(v)
        if tv == "string" or tv == "number" or tv == "boolean" then
            parts[#parts + 1] = cjson.encode(k) .. ":" .. cjson.encode(v)
        end
    end
    return "{" .. table.concat(parts, ",") .. "}"
end

local function encode_array(list, encode_item)
    local parts = {}
    for i, v in ipairs(list or {}) do parts[i] = encode_item(v) end
    return "[" .. table.concat(parts, ",") .. "]"
end

--- The report as one JSON object: the five lists and "warnings" always
--- present as arrays, plus "summary" counts and "dry_run".
function M.json(report)
    local parts = {}
    for _, list in ipairs(M.LISTS) do
        parts[#parts + 1] = cjson.encode(list) .. ":" .. encode_array(report[list], encode_record)
    end
    parts[#parts + 1] = '"warnings":' .. encode_array(report.warnings, function(w)
        return cjson.encode(tostring(w))
    end)
    parts[#parts + 1] = '"dry_run":' .. (report.dry_run and "true" or "false")
    local counts = {}
    for _, list in ipairs(M.LISTS) do counts[list] = #(report[list] or {}) end
    parts[#parts + 1] = '"summary":' .. encode_record(counts)
    return "{" .. table.concat(parts, ",") .. "}"
end

--- The exit code SPEC §2 asks of `recover`: 0 when every desired container
--- is running (or would be, in a dry run), 1 when one failed or was skipped.
function M.exit_code(report)
    if #(report.failed or {}) > 0 or #(report.skipped or {}) > 0 then return 1 end
    return 0
end

return M
