-- mcp.timefmt: RFC 3339 times as podman and the agent write them, to and
-- from seconds since the epoch (UTC), in pure Lua (the fake runtime and the
-- specs need it as much as the daemon).
local M = {}

-- Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
local function days_from_civil(y, m, d)
    y = m <= 2 and y - 1 or y
    local era = (y >= 0 and y or y - 399) // 400
    local yoe = y - era * 400
    local doy = (153 * (m > 2 and m - 3 or m + 9) + 2) // 5 + d - 1
    local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468
end

--- Seconds since the epoch of "2026-12-01T23:15:22.071234Z" (or with a
--- ±hh:mm offset), fractions kept; nil for anything else ("" included).
function M.parse(text)
    if type(text) ~= "string" then return nil end
    local y, mo, d, h, mi, s, rest = text:match("^(%d%d%d%d)-(%d%d)-(%d%d)[Tt ](%d%d):(%d%d):(%d%d)(.*)$")
    if not y then return nil end
    local frac, zone = rest:match("^(%.%d+)(.*)$")
    zone = zone or rest
    local offset = 0
    if zone ~= "Z" and zone ~= "z" then
        local sign, oh, om = zone:match("^([+-])(%d%d):?(%d%d)$")
        if not sign then return nil end
        offset = (tonumber(oh) * 3600 + tonumber(om) * 60) * (sign == "-" and -1 or 1)
    end
    local days = days_from_civil(tonumber(y), tonumber(mo), tonumber(d))
    return days * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(s) + (tonumber(frac or "0") or 0)
        - offset
end

--- "2026-12-01T23:15:22Z" of seconds since the epoch (whole seconds, UTC).
function M.format(seconds)
    return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(seconds))
end

return M
