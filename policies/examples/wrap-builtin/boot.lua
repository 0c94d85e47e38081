-- An operator's boot.lua that keeps the built-in boot policy and changes one
-- number: probes back off from 0.1 s up to 1 s instead of 10-50 ms (fewer
-- probes on a slow node). Copy it into [policy] dir as boot.lua.
local boot = require("policy.builtin.boot")

boot.PROBE_BACKOFF = { base = 0.1, cap = 1, jitter = "none" }

return boot
