-- seed-compatible.lua: the original (Go) agent's boot algorithm, kept as an
-- example and as a baseline to compare boot.lua against. To use it, point
-- [policy] dir at this directory (policies/examples/seed-compatible), or copy
-- this file into your policy directory as boot.lua.
--
-- Every stage first recovers EVERY service (not only its own), then polls
-- each of the stage's services' health one after another, every 2 s, until
-- the stage deadline. No backoff, no concurrency, no foundation retry.
-- Same signature and report shape as boot.lua: run(agent, stages, opts).

local recovery = require("mcp.recovery")
local lifecycle = require("mcp.lifecycle")
local health = require("mcp.health")

local M = {}

M.POLL_INTERVAL = 2

-- Probes every component of a service once; true when all answered.
local function service_healthy(agent, svc, stage, timeout)
    for _, c in ipairs(svc.components or {}) do
        if (c.desired_state or "running") == "running" then
            local name = lifecycle.container_of(svc, c)
            local rec = agent.runtime.inspect(name)
            if not rec or rec.state ~= "running" then return false end
            local target = health.probe_spec(c, stage)
            if target then
                local hp = health.host_port(rec, target.port)
                if hp and not health.probe(agent, target.check, hp, target.path, timeout) then
                    return false
                end
            end
        end
    end
    return true
end

function M.run(agent, stages, opts)
    opts = opts or {}
    stages = stages or (agent.config and agent.config.boot) or {}
    local report = { stages = {}, unknown = {}, healthy = true, cancelled = false,
                     dry_run = opts.dry_run or false }
    for _, stage in ipairs(stages) do
        local started = agent.clock.now()
        local deadline = started + (stage.timeout or 60)
        local sr = { name = stage.name, services = {}, unknown = {}, healthy = true, timed_out = false }
        sr.start = recovery.recover(agent, { dry_run = opts.dry_run, parallel = 1 })
        for _, name in ipairs(stage.services or {}) do
            local svc = agent.registry.service(name)
            local res = { service = name, healthy = false, attempts = 0, restarts = 0, components = {} }
            if not svc then
                sr.unknown[#sr.unknown + 1] = name
                report.unknown[#report.unknown + 1] = name
                agent.log.warn("boot stage " .. tostring(stage.name) .. " names unknown service " .. name)
            elseif not opts.dry_run then
                while true do
                    res.attempts = res.attempts + 1
                    if service_healthy(agent, svc, stage, 2) then
                        res.healthy = true
                        res.time_to_healthy = agent.clock.now() - started
                        break
                    end
                    if agent.clock.now() + M.POLL_INTERVAL > deadline then break end
                    if not agent.clock.sleep(M.POLL_INTERVAL) then
                        report.cancelled = true
                        break
                    end
                end
                if not res.healthy then sr.healthy, sr.timed_out = false, true end
            end
            sr.services[#sr.services + 1] = res
            if report.cancelled then break end
        end
        sr.elapsed = agent.clock.now() - started
        report.stages[#report.stages + 1] = sr
        if not sr.healthy then
            report.healthy = false
            agent.log.warn("boot stage " .. tostring(stage.name) .. " not healthy, proceeding")
        end
        if report.cancelled then break end
    end
    return report
end

return M
