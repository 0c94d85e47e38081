-- recover.lua: the recover policy (SPEC §5), as operators tune it.
--
-- One pass of mcp.recovery over every active service: containers that are
-- not running (exited, created or missing) are recreated from the registry,
-- running ones are left alone (their routes re-registered), a missing image
-- is skipped with a warning, mc-proxy and Metacrypt failures are warnings
-- retried with backoff. Change the knobs below, or replace run() entirely:
-- the agent calls recover.run(agent, opts) -> report (docs/LUA_API.md),
-- opts = { dry_run = bool }.

local recovery = require("mcp.recovery")
local backoff = require("policy.backoff")

-- The helpers of mcp.recovery (component, recover, …) read through.
local M = setmetatable({}, { __index = recovery })

M.PARALLEL = 4                                        -- services recovered at once
M.ROUTE_ATTEMPTS = 3                                  -- mc-proxy / Metacrypt tries per component
M.ROUTE_BACKOFF = { base = 0.2, cap = 2, jitter = "full" }

function M.run(agent, opts)
    opts = opts or {}
    local report = recovery.recover(agent, {
        dry_run = opts.dry_run, only = opts.only, on_component = opts.on_component,
        parallel = opts.parallel or M.PARALLEL,
        route_attempts = M.ROUTE_ATTEMPTS,
        route_delays = function() return backoff.new(M.ROUTE_BACKOFF) end,
    })
    agent.log.info("recover finished", {
        recovered = #report.recovered, already_running = #report.already_running,
        skipped = #report.skipped, failed = #report.failed, planned = #report.planned,
        dry_run = report.dry_run,
    })
    return report
end

return M
