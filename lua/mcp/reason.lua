-- mcp.reason: one line for a failure from a (reason, detail) pair as agent
-- calls return them: "no such image: x:1 is not known". The generic reason
-- "failed" adds nothing in front of the runtime's own words, so it is dropped.
return function(reason, detail)
    reason = tostring(reason or "failed")
    if detail and detail ~= "" then
        if reason == "failed" then return tostring(detail) end
        return reason .. ": " .. tostring(detail)
    end
    return reason
end
