---@meta
-- luacheck: ignore
-- Editor annotations (LuaLS) for policies: the `agent` object, every
-- primitive's arguments and returns (expected failures are `nil, reason,
-- detail`), the policy tables and mcp.testing. Never loaded at run time.
-- Point your editor at this file's folder (examples/luarc.json); see
-- docs/LUA_API.md for the words. tests/integration/test_operator.py checks
-- that it names every function the real agent has.

---@alias mcp.Reason "timeout"|"no such image"|"no such container"|"name in use"|"port in use"|"podman not found"|"refused"|"cancelled"|"failed"|"registry unreachable"|string

-- registry --------------------------------------------------------------------

---@class mcp.Route
---@field name string
---@field port? integer container port; nil: the process listens on $PORT
---@field mode? "l4"|"l7"
---@field hostname? string
---@field host_port? integer persisted host port

---@class mcp.Health
---@field check "tcp"|"grpc"|"http"
---@field port? integer
---@field path? string
---@field interval number seconds
---@field timeout number seconds
---@field failure_threshold integer

---@class mcp.Component
---@field name string
---@field container string container name
---@field image string
---@field network? string
---@field user? string
---@field restart? string
---@field ports string[]
---@field volumes string[]
---@field cmd string[]
---@field env string[] "KEY=value"
---@field desired_state "running"|"stopped"
---@field health? mcp.Health
---@field routes mcp.Route[]

---@class mcp.Service
---@field name string
---@field active boolean
---@field components mcp.Component[]

---@class mcp.Event
---@field id integer
---@field time number seconds since the epoch
---@field service? string
---@field component? string
---@field kind string
---@field message string
---@field exit_code? integer

---@class mcp.Supervision
---@field restarts integer
---@field last_exit_code integer
---@field state string
---@field backoff_until? number
---@field reason? string
---@field started_at? number

---@class mcp.Registry
local registry = {}

---Every service, active or not, by name.
---@return mcp.Service[]
function registry.services() end

---@param name string
---@return mcp.Service|nil
function registry.service(name) end

---@param service string
---@param component string|nil nil: every component
---@param state "running"|"stopped"
---@return integer changed
function registry.set_desired(service, component, state) end

---@param service string
---@param active boolean
---@return boolean|nil ok, string? reason, string? detail
function registry.set_active(service, active) end

---@param service string
---@param component string|nil
---@param kind string
---@param message string
---@param exit_code? integer
---@return true
function registry.event(service, component, kind, message, exit_code) end

---Newest first.
---@param service string|nil
---@param limit integer
---@param since? number unix seconds
---@return mcp.Event[]
function registry.events(service, limit, since) end

---Oldest first, ids above id.
---@param id integer
---@param service string|nil
---@param limit integer
---@return mcp.Event[]
function registry.events_after(id, service, limit) end

---@param name string
---@return boolean|nil ok, string? reason, string? detail
function registry.delete(name) end

---Validates a SPEC §4 document and stores it in one transaction.
---@param text string
---@param filename? string
---@return mcp.Service|nil service, "invalid"|"registry"|nil reason, string? detail
function registry.deploy(text, filename) end

---Validates a SPEC §4 document without storing it.
---@param text string
---@param filename? string
---@return true|nil ok, string name_or_reason, string[]|string unknown_keys_or_detail, mcp.Service? definition
function registry.validate(text, filename) end

---Consistent online backup (SQLite backup API).
---@param dest string
---@return true|nil ok, string? reason, string? detail
function registry.snapshot(dest) end

---@param service string
---@param component string
---@return mcp.Supervision|nil
function registry.supervision(service, component) end

---@return mcp.Supervision[]
function registry.supervisions() end

---Fields not given keep their value; false clears one.
---@param service string
---@param component string
---@param fields table
---@return true|nil ok, string? reason
function registry.set_supervision(service, component, fields) end

---@param service string
---@param component? string
---@return integer deleted
function registry.clear_supervision(service, component) end

-- runtime ---------------------------------------------------------------------

---@class mcp.PortMapping
---@field host_ip string
---@field host_port integer
---@field container_port integer
---@field protocol string

---@class mcp.Container
---@field id string
---@field name string
---@field image string
---@field state string "running", "exited", "created", …
---@field exit_code integer
---@field started_at string
---@field finished_at string
---@field oom boolean
---@field labels table<string, string>
---@field ports mcp.PortMapping[]
---@field env? string[] inspect only
---@field cmd? string[] inspect only
---@field volumes? string[] inspect only
---@field user? string inspect only
---@field network? string inspect only
---@field restart? string inspect only

---@class mcp.RunSpec
---@field name string
---@field image string
---@field network? string
---@field user? string
---@field restart? string
---@field ports? string[]
---@field volumes? string[]
---@field cmd? string[]
---@field env? string[]
---@field labels? table<string, string>

---@class mcp.RuntimeEvent
---@field name string
---@field id string
---@field status string "died", "start", "remove", …
---@field exit_code? integer
---@field time number
---@field image string
---@field labels table<string, string>

---@class mcp.EventStream
local stream = {}
---@param timeout_s number
---@return mcp.RuntimeEvent|nil event, "timeout"|"closed"|"cancelled"|"overflow"|nil reason, string? detail
function stream:next(timeout_s) end
function stream:close() end

---@class mcp.Runtime
local runtime = {}

---@return mcp.Container[]|nil containers, mcp.Reason? reason, string? detail
function runtime.list() end

---@param name string
---@return mcp.Container|nil container, mcp.Reason? reason, string? detail
function runtime.inspect(name) end

---Only mcp.lifecycle calls it.
---@param spec mcp.RunSpec
---@return string|nil id, mcp.Reason? reason, string? detail
function runtime.run(spec) end

---@param name string
---@return true|nil ok, mcp.Reason? reason, string? detail
function runtime.start(name) end

---@param name string
---@param timeout_s? integer default 10
---@return true|nil ok, mcp.Reason? reason, string? detail
function runtime.stop(name, timeout_s) end

---Forcibly; a missing container is fine.
---@param name string
---@return true|nil ok, mcp.Reason? reason, string? detail
function runtime.remove(name) end

---@param image string
---@return boolean|nil exists, mcp.Reason? reason, string? detail
function runtime.image_exists(image) end

---podman pull, bounded by [agent] podman_timeout; deploy only.
---@param image string
---@return true|nil ok, string progress_or_reason, string? detail
function runtime.pull(image) end

---podman's event stream.
---@return mcp.EventStream|nil stream, mcp.Reason? reason, string? detail
function runtime.events() end

-- clock, task, log, probe, proxy, certs, http -------------------------------------

---@class mcp.Clock
local clock = {}
---@return number seconds, monotonic
function clock.now() end
---@param seconds number
---@return true|nil ok, "cancelled"? reason
function clock.sleep(seconds) end
---@return number seconds since the epoch
function clock.wallclock() end

---@class mcp.TaskHandle
---@field wait fun(timeout?: number): boolean|nil, ...

---@class mcp.Task
local task = {}
---@param fn function
---@return mcp.TaskHandle
function task.spawn(fn, ...) end
---@param handle mcp.TaskHandle
---@param timeout? number nil: for ever
---@return boolean|nil ok, ... true, results | false, errmsg | nil, "timeout"|"cancelled"
function task.wait(handle, timeout) end
---@param handle mcp.TaskHandle
function task.cancel(handle) end
---@param handle mcp.TaskHandle
---@return "new"|"running"|"done"|"failed"|"cancelled"
function task.status(handle) end
---@param handles mcp.TaskHandle[]
---@param timeout? number
---@return table[] per handle { ok, ... }
function task.all(handles, timeout) end

---@class mcp.Log
local log = {}
---@param msg string
---@param fields? table
function log.debug(msg, fields) end
---@param msg string
---@param fields? table
function log.info(msg, fields) end
---@param msg string
---@param fields? table
function log.warn(msg, fields) end
---@param msg string
---@param fields? table
function log.error(msg, fields) end

---@class mcp.Probe
local probe = {}
---@param host string
---@param port integer
---@param timeout? number
---@return true|nil ok, number|string latency_or_reason, number? latency
function probe.tcp(host, port, timeout) end
---@param host string
---@param port integer
---@param path? string
---@param timeout? number
---@return true|nil ok, number|string latency_or_reason, number? latency
function probe.http(host, port, path, timeout) end
---@param host string
---@param port integer
---@param service? string
---@param timeout? number
---@return true|nil ok, number|string latency_or_reason, number? latency
function probe.grpc(host, port, service, timeout) end

---@class mcp.ProxyRoute
---@field listener string
---@field hostname string
---@field backend string
---@field mode "l4"|"l7"

---Present only when [mcproxy] socket is set.
---@class mcp.Proxy
local proxy = {}
---@param route mcp.ProxyRoute
---@return true|nil ok, mcp.Reason? reason, string? detail
function proxy.add_route(route) end
---@param listener string
---@param hostname string
---@return true|nil ok, mcp.Reason? reason, string? detail
function proxy.remove_route(listener, hostname) end
---@return mcp.ProxyRoute[]|nil routes, mcp.Reason? reason, string? detail
function proxy.list_routes() end

---Present only when [metacrypt] server_url is set.
---@class mcp.Certs
local certs = {}
---@param service string
---@param hostnames string[]
---@return {cert: string, key: string}|nil paths, mcp.Reason? reason, string? detail
function certs.ensure(service, hostnames) end
---@param service string
---@return {cert: string, expires_at: string, status: string}|nil info, "missing"|"config"|nil reason
function certs.info(service) end

---@class mcp.HttpRequest
---@field method? string
---@field url string
---@field headers? table<string, string>
---@field body? string
---@field timeout? number

---@class mcp.Http
local http = {}
---@param req mcp.HttpRequest
---@return integer|nil status, string body_or_reason, table|string headers_or_detail
function http.request(req) end

---@class mcp.Config
---@field node_name string
---@field container_runtime "podman"|"fake"
---@field port_min integer
---@field port_max integer
---@field policy_dir? string
---@field pull "missing"|"never"
---@field dry_run boolean
---@field monitor_interval number
---@field podman_timeout number
---@field warnings integer unknown config keys warned about
---@field boot {name: string, services: string[], timeout: number, health: string}[]
---@field mcproxy {socket?: string, cert_dir?: string, listener: string}
---@field metacrypt table

---The capability object every policy gets.
---@class mcp.Agent
---@field config mcp.Config read-only
---@field log mcp.Log
---@field clock mcp.Clock
---@field task mcp.Task
---@field registry mcp.Registry
---@field runtime mcp.Runtime
---@field probe mcp.Probe
---@field proxy? mcp.Proxy
---@field certs? mcp.Certs
---@field http mcp.Http
---@field version string

-- policies ------------------------------------------------------------------------

---@class mcp.RecoverEntry
---@field service string
---@field component string
---@field container string
---@field reason? string
---@field action? string

---@class mcp.RecoverReport
---@field recovered mcp.RecoverEntry[]
---@field already_running mcp.RecoverEntry[]
---@field skipped mcp.RecoverEntry[]
---@field failed mcp.RecoverEntry[]
---@field planned mcp.RecoverEntry[]
---@field warnings string[]

---policy.recover
---@class mcp.RecoverPolicy
---@field run fun(agent: mcp.Agent, opts: {dry_run?: boolean, only?: table}): mcp.RecoverReport

---@class mcp.BootStage
---@field name string
---@field services string[]
---@field timeout number
---@field health "tcp"|"grpc"|"http"

---policy.boot
---@class mcp.BootPolicy
---@field run fun(agent: mcp.Agent, stages: mcp.BootStage[], opts: {dry_run?: boolean}): {healthy: boolean, cancelled?: boolean, stages: table[]}
---@field settings? fun(opts?: table): table
---@field PROBE_BACKOFF? {base: number, cap: number, jitter: string}

---@class mcp.ExitInfo
---@field service string
---@field component string
---@field container string
---@field exit_code? integer nil when it vanished
---@field oom boolean
---@field restarts integer since it was last stable
---@field running_for number seconds
---@field reason "died"|"missing"|"unhealthy"
---@field error? string the last probe error (unhealthy)

---policy.supervise: return the seconds to wait before a restart, or false, reason.
---@class mcp.SupervisePolicy
---@field on_exit fun(agent: mcp.Agent, component: mcp.Component, info: mcp.ExitInfo): number|false, string?
---@field on_unhealthy? fun(agent: mcp.Agent, component: mcp.Component, info: mcp.ExitInfo): number|false, string?
---@field on_event? fun(agent: mcp.Agent, event: {time_unix_ms: integer, service: string, component: string, kind: string, message: string, exit_code: integer})
---@field STABLE_AFTER? number

---@class mcp.Backoff
---@field next fun(): number seconds
---@field reset fun()
---@field attempts integer

---@class mcp.BackoffOpts
---@field base? number
---@field cap? number
---@field factor? number
---@field jitter? "none"|"full"|"equal"|"decorrelated"
---@field random? fun(): number
---@field tries? integer

---policy.backoff
---@class mcp.BackoffPolicy
---@field new fun(opts?: mcp.BackoffOpts): mcp.Backoff
---@field delays fun(opts?: mcp.BackoffOpts): fun(): number?
---@field seeded fun(seed: integer): fun(): number

-- mcp.testing ---------------------------------------------------------------------

---@alias mcp.testing.ProbeRule {after?: number, never?: boolean, flap?: number, hang?: boolean, latency?: number, reason?: string}|"never"

---@class mcp.testing.WorldOpts
---@field services? table[]
---@field images? string[]
---@field containers? table[]
---@field config? table
---@field health? table<string, mcp.testing.ProbeRule>
---@field health_default? mcp.testing.ProbeRule
---@field latency? number|table<string, number>
---@field proxy? false
---@field certs? false
---@field echo? boolean
---@field events_max? integer
---@field max_steps? integer

---The fake runtime: agent.runtime plus the knobs.
---@class mcp.testing.Runtime: mcp.Runtime
---@field kill fun(name: string, exit_code?: integer, opts?: {oom?: boolean}): true|nil, string?
---@field crash_loop fun(name: string, exit_code?: integer, after?: number): true
---@field vanish fun(name?: string): true
---@field end_events fun(detail?: string): true
---@field mute_events fun(on?: boolean)
---@field fail_next fun(op: string, reason?: string, detail?: string, count?: integer)
---@field add_image fun(image: string)
---@field remove_image fun(image: string)
---@field publish_image fun(image: string)
---@field set_state fun(name: string, state: string, exit_code?: integer): true|nil, string?
---@field add_container fun(rec: table): string
---@field container fun(name: string): table|nil
---@field all fun(): table[]
---@field ops fun(): {op: string, name?: string, time: number, ok: boolean, reason?: string}[]
---@field mutations fun(): table[]
---@field clear_ops fun()
---@field streams fun(): integer

---@class mcp.testing.World
---@field agent mcp.Agent
---@field runtime mcp.testing.Runtime
---@field registry mcp.Registry
---@field health table<string, mcp.testing.ProbeRule>
---@field probe_log {kind: string, host: string, port: integer, time: number, container?: string, ok: boolean, reason?: string}[]
---@field logs {level: string, msg: string, fields: table, time: number}[]
---@field proxy? table
---@field proxy_down? boolean
---@field certs? table
---@field certs_down? boolean
---@field http_requests table[]
---@field http_answer? table|function
local World = {}
---@return number virtual seconds
function World:now() end
---@param fn fun(agent: mcp.Agent, ...): ...
---@param opts? {max_time?: number, cancel_after?: number}
---@return ...
function World:run(fn, opts) end
---@param fn fun(agent: mcp.Agent, ...)
---@return mcp.TaskHandle
function World:spawn(fn, ...) end
---@param handle mcp.TaskHandle
---@param opts? {max_time?: number, cancel_after?: number}
---@return table packed results of handle.wait()
function World:wait(handle, opts) end
---@param seconds number
function World:advance(seconds) end
---@param level? "debug"|"info"|"warn"|"error"
---@return string[]
function World:log_lines(level) end
---@param level "debug"|"info"|"warn"|"error"|nil
---@param text string
---@return boolean
function World:logged(level, text) end
---@return mcp.Event[]
function World:events() end

---require "mcp.testing"
---@class mcp.testing
---@field world fun(opts?: mcp.testing.WorldOpts): mcp.testing.World
---@field service fun(s: table): mcp.Service defaults filled in
---@field component fun(service_name: string, c: table): mcp.Component
---@field deep_copy fun(v: any): any
