-- backoff.lua: exponential backoff with jitter, for retries and health polls.
--
--   local backoff = require "policy.backoff"
--   local b = backoff.new{ base = 0.5, cap = 10, jitter = "full" }
--   local d = b.next()                      -- seconds to wait before the next try
--   for d in backoff.delays{ base = 1, cap = 30, tries = 5 } do ... end
--
-- Jitter (see "Exponential Backoff And Jitter", AWS Architecture Blog):
--   "none"          min(cap, base * factor^n)
--   "full"          uniform(0, min(cap, base * factor^n))       (default)
--   "equal"         half fixed, half random
--   "decorrelated"  min(cap, uniform(base, previous * 3))
-- Every delay lies in [0, cap] ("decorrelated": in [base, cap]). Given
-- opts.random (a function returning a float in [0, 1)), the sequence is
-- deterministic; backoff.seeded(seed) makes such a function.
-- Operators may edit this file: policies only call new, delays and seeded.

local M = {}

local JITTERS = { none = true, full = true, equal = true, decorrelated = true }

local function check_opts(opts)
    opts = opts or {}
    local base = opts.base or 0.5
    local cap = opts.cap or 30
    local factor = opts.factor or 2
    if type(base) ~= "number" or base < 0 then error("backoff: base must be a number >= 0", 3) end
    if type(cap) ~= "number" or cap < base then error("backoff: cap must be a number >= base", 3) end
    if type(factor) ~= "number" or factor < 1 then error("backoff: factor must be a number >= 1", 3) end
    local jitter = opts.jitter or "full"
    if not JITTERS[jitter] then error("backoff: unknown jitter \"" .. tostring(jitter) .. "\"", 3) end
    local random = opts.random or math.random
    if type(random) ~= "function" then error("backoff: random must be a function", 3) end
    return base, cap, factor, jitter, random
end

--- A backoff state. Returns a table with next() -> delay in seconds,
--- reset(), and attempts (how many delays were handed out).
function M.new(opts)
    local base, cap, factor, jitter, random = check_opts(opts)
    local b = { attempts = 0 }
    local prev = base

    function b.next()
        local n = b.attempts
        b.attempts = n + 1
        local ceiling = math.min(cap, base * factor ^ math.min(n, 64))
        local r = random()
        local d
        if jitter == "none" then
            d = ceiling
        elseif jitter == "full" then
            d = r * ceiling
        elseif jitter == "equal" then
            d = ceiling / 2 + r * ceiling / 2
        else
            d = math.min(cap, base + r * (prev * 3 - base))
            prev = d
        end
        return math.max(0, math.min(cap, d))
    end

    function b.reset()
        b.attempts = 0
        prev = base
    end

    return b
end

--- An iterator over delays: `for d in backoff.delays(opts) do ... end`.
--- opts.tries bounds the number of delays (nil = endless).
function M.delays(opts)
    local b = M.new(opts)
    local tries = opts and opts.tries
    return function()
        if tries and b.attempts >= tries then return nil end
        return b.next()
    end
end

--- A deterministic random function in [0, 1) from an integer seed
--- (a 32-bit LCG: good enough for jitter, identical on every platform).
function M.seeded(seed)
    local state = math.tointeger(seed or 1) or 1
    return function()
        state = (state * 1103515245 + 12345) % 2147483648
        return state / 2147483648
    end
end

return M
