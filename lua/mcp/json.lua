-- mcp.json: JSON encoding that keeps empty lists as [] (the Debian build of
-- lua-cjson has no array metatable) and orders object keys for stable output.
-- Scalars go through cjson.
local cjson = require("cjson")

local M = {}

local marked = setmetatable({}, { __mode = "k" })

--- Marks t as a JSON array (so an empty one encodes as []); returns t.
function M.array(t)
    marked[t] = true
    return t
end

local function is_array(t, key, array_keys)
    if marked[t] or (array_keys and array_keys[key]) then return true end
    local n = #t
    if n == 0 then return false end
    for k in pairs(t) do
        if math.type(k) ~= "integer" or k < 1 or k > n then return false end
    end
    return true
end

local function scalar(v)
    if type(v) == "number" and (v ~= v or v == math.huge or v == -math.huge) then return "null" end
    return cjson.encode(v)
end

local function encode(v, key, array_keys, out, depth)
    local t = type(v)
    if t ~= "table" then
        if t == "function" or t == "userdata" or t == "thread" then
            out[#out + 1] = "null"
        else
            out[#out + 1] = scalar(v)
        end
        return
    end
    if depth > 64 then error("mcp.json: nesting deeper than 64 (a cycle?)", 0) end
    if is_array(v, key, array_keys) then
        out[#out + 1] = "["
        for i = 1, #v do
            if i > 1 then out[#out + 1] = "," end
            encode(v[i], nil, array_keys, out, depth + 1)
        end
        out[#out + 1] = "]"
        return
    end
    local keys = {}
    for k, val in pairs(v) do
        local vt = type(val)
        if vt ~= "function" and vt ~= "userdata" and vt ~= "thread" then keys[#keys + 1] = tostring(k) end
    end
    table.sort(keys)
    out[#out + 1] = "{"
    for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = cjson.encode(k)
        out[#out + 1] = ":"
        local val = v[k]
        if val == nil then val = v[tonumber(k)] end
        encode(val, k, array_keys, out, depth + 1)
    end
    out[#out + 1] = "}"
end

--- Encodes v. array_keys: a set of key names whose values are always arrays.
function M.encode(v, array_keys)
    local out = {}
    encode(v, nil, array_keys, out, 0)
    return table.concat(out)
end

return M
