-- boot.lua: the boot sequence (SPEC §6), as operators tune it.
--
-- Stages run in order; each starts only its own services and waits until
-- they pass their health checks (the mechanics: lua/mcp/boot.lua). The first
-- stage is the foundation: while unhealthy it retries for ever, restarting
-- containers that died, until the agent is stopped. Later stages warn and
-- proceed after their timeout. Active services in no stage start last.
--
-- The agent calls boot.run(agent, stages, opts) -> report (docs/LUA_API.md);
-- stages default to the config's [[boot.sequence]]. opts may override any
-- setting below for one run (lower-case names: parallel, stage_timeout,
-- probe_timeout, backoff, retry_backoff) and carries dry_run and progress.
-- To change one number, copy this file into [policy] dir and edit it, or
-- wrap it: `local boot = require "policy.builtin.boot"` (docs/LUA_API.md).

local boot = require("mcp.boot")
local backoff = require("policy.backoff")

local M = {}

-- podman runs started together all finish late (they contend for podman's
-- locks and 2 cores here): 4 at a time brought the first containers up
-- sooner and measured faster than all 8 of a stage at once (docs/BENCHMARKS.md).
M.START_PARALLEL = 4
M.STAGE_TIMEOUT = 60 -- s, when a stage sets none
M.PROBE_TIMEOUT = 2 -- s, one probe
-- Probes within the stage timeout: 10 ms to 50 ms apart, so a service is
-- seen healthy within tens of ms of answering.
M.PROBE_BACKOFF = { base = 0.01, cap = 0.05, jitter = "full" }
-- The foundation's endless retry after its timeout backs off to seconds.
M.RETRY_BACKOFF = { base = 0.25, cap = 5, jitter = "full" }
-- Ask podman whether a container still runs only after probes failed this
-- long, then at most this often (after the foundation's timeout: RETRY_…).
M.LIVENESS_AFTER = 1
M.LIVENESS_INTERVAL = 1
M.RETRY_LIVENESS_INTERVAL = 5

--- The settings of one run: the numbers above, overridden by opts.
function M.settings(opts)
    opts = opts or {}
    local probe = opts.backoff or M.PROBE_BACKOFF
    local retry = opts.retry_backoff or M.RETRY_BACKOFF
    return {
        parallel = opts.parallel or M.START_PARALLEL,
        stage_timeout = opts.stage_timeout or M.STAGE_TIMEOUT,
        probe_timeout = opts.probe_timeout or M.PROBE_TIMEOUT,
        probe_delays = function() return backoff.new(probe) end,
        retry_delays = function() return backoff.new(retry) end,
        liveness_after = M.LIVENESS_AFTER,
        liveness_interval = M.LIVENESS_INTERVAL,
        retry_liveness_interval = M.RETRY_LIVENESS_INTERVAL,
        dry_run = opts.dry_run,
        progress = opts.progress,
    }
end

--- boot.run(agent, stages, opts) -> report
--- { stages = { {name=, foundation=, healthy=, timed_out=, elapsed=, unknown={},
---     services = { {service=, healthy=, attempts=, restarts=, time_to_healthy=,
---     components={...}} }, start = <recover report>} },
---   unknown = {names}, unstaged = <recover report of services in no stage>,
---   healthy = bool, cancelled = bool, dry_run = bool }
function M.run(agent, stages, opts)
    opts = opts or {}
    stages = stages or (agent.config and agent.config.boot) or {}
    opts.dry_run = opts.dry_run or (agent.config and agent.config.dry_run) or false
    local settings = M.settings(opts)
    local report = { stages = {}, unknown = {}, healthy = true, cancelled = false, dry_run = opts.dry_run }
    local services = boot.services_by_name(agent)

    for i, stage in ipairs(stages) do
        local sr = boot.stage(agent, stage, i == 1, services, settings)
        report.stages[#report.stages + 1] = sr
        for _, u in ipairs(sr.unknown) do report.unknown[#report.unknown + 1] = u end
        if not sr.healthy then report.healthy = false end
        if sr.cancelled then
            report.cancelled, report.healthy = true, false
            agent.log.warn("boot cancelled during stage " .. tostring(stage.name))
            return report
        end
    end

    report.unstaged = boot.unstaged(agent, stages, settings)
    if report.unstaged then
        if report.unstaged.cancelled then report.cancelled = true end
        if #report.unstaged.failed > 0 then report.healthy = false end
    end
    agent.log.info("boot finished", { healthy = report.healthy, stages = #report.stages })
    if opts.progress then opts.progress({ state = "done", healthy = report.healthy }) end
    return report
end

return M
