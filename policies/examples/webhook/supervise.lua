-- An operator's supervise.lua: the built-in restart decisions, plus a
-- webhook for crash loops and given-up components — at most one message per
-- component per SUPPRESS seconds (a flapping component does not flood the
-- channel) — and a recovery notice once an alerted component passes its
-- probe again. Copy it into [policy] dir as supervise.lua and set WEBHOOK.
local supervise = require("policy.builtin.supervise")
local json = require("mcp.json")

local M = setmetatable({}, { __index = supervise })

M.WEBHOOK = "http://127.0.0.1:8089/hooks/mcp"  -- where the messages go (a chat webhook, …)
M.CRASH_LOOP_AFTER = 3      -- restarts since it was last stable that make a crash loop
M.SUPPRESS = 10 * 60        -- s: at most one message per component in this time
M.TIMEOUT = 5               -- s for one webhook call

local last_sent = {}   -- "service/component" -> agent clock time of the last message
local alerted = {}     -- components told about, owed a recovery notice

local function post(agent, text)
    local status, body = agent.http.request{
        method = "POST", url = M.WEBHOOK, timeout = M.TIMEOUT,
        headers = { ["Content-Type"] = "application/json" },
        body = json.encode({ text = text }),
    }
    if status ~= 200 and status ~= 204 then
        agent.log.warn("webhook refused the message", { status = tostring(status), answer = tostring(body) })
    end
end

function M.on_event(agent, event)
    local key = event.service .. "/" .. event.component
    if event.kind == "healthy" and alerted[key] then
        alerted[key] = nil
        post(agent, string.format("%s recovered: %s", key, event.message))
        return
    end
    local alarm = event.kind == "gave-up"
    if event.kind == "backoff" then
        local row = agent.registry.supervision(event.service, event.component)
        alarm = row ~= nil and (row.restarts or 0) >= M.CRASH_LOOP_AFTER
    end
    if not alarm then return end
    local now = agent.clock.now()
    if last_sent[key] and now - last_sent[key] < M.SUPPRESS then return end
    last_sent[key] = now
    alerted[key] = true
    local what = event.kind == "gave-up" and "gave up" or "is crash-looping"
    post(agent, string.format("%s %s: %s", key, what, event.message))
end

return M
