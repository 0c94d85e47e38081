-- mcp.drift: whether a running container still is what the registry says
-- it should be (SPEC §10): its mcp.spec-hash label against the hash of the
-- stored spec. Shared by the supervisor (every full list) and `status`.
local spec = require("mcp.spec")

local M = {}

--- nil when the container matches its component's spec, else a short
--- reason: "not created by the agent" (no labels) or "spec changed".
--- Also returns the label's value (nil when absent), to report a change once.
function M.of(record, service, component)
    local labels = record and record.labels
    local have = type(labels) == "table" and labels["mcp.spec-hash"] or nil
    if not have then return "not created by the agent (no mcp.spec-hash label)", nil end
    local want = spec.container(service, component).labels["mcp.spec-hash"]
    if have ~= want then return "spec changed since it was created", have end
    return nil, have
end

return M
