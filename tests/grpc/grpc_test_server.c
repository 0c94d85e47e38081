/* A gRPC test server on mcp_grpc_server: health, and AgentService methods with
 * canned answers delivered later from uv timers (to exercise asynchronous
 * completion). Used by tests/integration/test_grpc_server.py.
 *
 *   grpc_test_server [--unix PATH] [--tcp HOST:PORT [--insecure | --cert F --key F --ca F]]
 *                    [--services N] [--delay-ms MS] [--slow-ms MS] [--max-message BYTES]
 *                    [--grace-ms MS]
 *
 * Prints "READY port=<tcp port or -1>" on stdout once listening; exits 0
 * after a graceful shutdown on SIGTERM/SIGINT, 2 on bad arguments or when a
 * listener is refused (the reason on stderr).
 *
 * Methods:
 *   /grpc.health.v1.Health/Check              immediate: SERVING for "" and the agent service
 *   /mcp.agent.v1.AgentService/ListServices   after --delay-ms: N services
 *   /mcp.agent.v1.AgentService/NodeStatus     after --delay-ms
 *   /mcp.agent.v1.AgentService/GetServiceStatus  after --slow-ms (the "slow" method)
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "grpc/health/v1/health.pb-c.h"
#include "mcp/agent/v1/agent.pb-c.h"
#include "mcp/grpc_server.h"
#include "mcp/log.h"
#include "mcp/util.h"

static struct {
    unsigned services;
    unsigned delay_ms;
    unsigned slow_ms;
    unsigned grace_ms;
    mcp_grpc_server *server;
    uv_signal_t sigterm, sigint;
    int pending; /* delayed replies not yet fired */
} app = {.services = 3, .delay_ms = 20, .slow_ms = 1000, .grace_ms = 5000};

/* A reply waiting on a timer. */
typedef struct pending {
    uv_timer_t timer;
    mcp_grpc_server_call *call;
    void (*answer)(struct pending *p);
    char *arg;
} pending;

static void on_cancel(mcp_grpc_server_call *call, int reason, void *ud)
{
    /* The test reads this line to prove the handler heard about it. */
    mcp_log(MCP_LOG_INFO, "call cancelled", "method", mcp_grpc_server_call_method(call), "reason",
            mcp_grpc_status_name(reason), NULL);
}

static void pending_closed(uv_handle_t *h)
{
    pending *p = h->data;
    free(p->arg);
    free(p);
    app.pending--;
}

static void pending_fire(uv_timer_t *t)
{
    pending *p = t->data;
    if (mcp_grpc_server_call_cancelled(p->call)) {
        /* finishing a cancelled call only frees it */
        mcp_grpc_server_fail(p->call, MCP_GRPC_CANCELLED, "cancelled");
    } else {
        p->answer(p);
    }
    uv_close((uv_handle_t *)t, pending_closed);
}

static void defer(mcp_grpc_server_call *call, unsigned ms, void (*answer)(pending *),
                  const char *arg)
{
    pending *p = calloc(1, sizeof *p);
    if (!p || (arg && !(p->arg = mcp_strdup(arg)))) {
        free(p);
        mcp_grpc_server_fail(call, MCP_GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    p->call = call;
    p->answer = answer;
    mcp_grpc_server_call_set_cancel(call, on_cancel, NULL);
    uv_timer_init(uv_default_loop(), &p->timer);
    p->timer.data = p;
    uv_timer_start(&p->timer, pending_fire, ms, 0);
    app.pending++;
}

/* ---- health ---- */

static void health_check(mcp_grpc_server_call *call, const uint8_t *req, size_t len, void *ud)
{
    Grpc__Health__V1__HealthCheckRequest *in =
        (Grpc__Health__V1__HealthCheckRequest *)mcp_grpc_server_unpack_or_fail(
            call, &grpc__health__v1__health_check_request__descriptor, req, len);
    if (!in)
        return;
    if (strcmp(in->service, "") != 0 && strcmp(in->service, "mcp.agent.v1.AgentService") != 0) {
        char *msg = mcp_sprintf("unknown service %s", in->service);
        mcp_grpc_server_fail(call, MCP_GRPC_NOT_FOUND, msg ? msg : "unknown service");
        free(msg);
    } else {
        Grpc__Health__V1__HealthCheckResponse out = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
        out.status = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
        mcp_grpc_server_reply_message(call, &out.base);
    }
    protobuf_c_message_free_unpacked(&in->base, NULL);
}

/* ---- agent ---- */

static void answer_list(pending *p)
{
    unsigned n = app.services;
    Mcp__Agent__V1__ListServicesResponse out = MCP__AGENT__V1__LIST_SERVICES_RESPONSE__INIT;
    Mcp__Agent__V1__ServiceInfo *infos = calloc(n ? n : 1, sizeof *infos);
    Mcp__Agent__V1__ServiceInfo **ptrs = calloc(n ? n : 1, sizeof *ptrs);
    Mcp__Agent__V1__ComponentInfo *comps = calloc(n ? n : 1, sizeof *comps);
    Mcp__Agent__V1__ComponentInfo **cptrs = calloc(n ? n : 1, sizeof *cptrs);
    char **names = calloc(n ? n : 1, sizeof *names);
    bool ok = infos && ptrs && comps && cptrs && names;
    for (unsigned i = 0; ok && i < n; i++) {
        mcp__agent__v1__service_info__init(&infos[i]);
        mcp__agent__v1__component_info__init(&comps[i]);
        names[i] = mcp_sprintf("svc%u", i);
        if (!names[i]) {
            ok = false;
            break;
        }
        comps[i].name = "web";
        comps[i].image = "localhost/test:1";
        comps[i].desired_state = "running";
        comps[i].observed_state = "running";
        comps[i].container = names[i];
        cptrs[i] = &comps[i];
        infos[i].name = names[i];
        infos[i].active = true;
        infos[i].n_components = 1;
        infos[i].components = &cptrs[i];
        ptrs[i] = &infos[i];
    }
    if (ok) {
        out.n_services = n;
        out.services = ptrs;
        mcp_grpc_server_reply_message(p->call, &out.base);
    } else {
        mcp_grpc_server_fail(p->call, MCP_GRPC_RESOURCE_EXHAUSTED, "out of memory");
    }
    for (unsigned i = 0; names && i < n; i++)
        free(names[i]);
    free(names);
    free(infos);
    free(ptrs);
    free(comps);
    free(cptrs);
}

static void list_services(mcp_grpc_server_call *call, const uint8_t *req, size_t len, void *ud)
{
    ProtobufCMessage *in = mcp_grpc_server_unpack_or_fail(
        call, &mcp__agent__v1__list_services_request__descriptor, req, len);
    if (!in)
        return;
    protobuf_c_message_free_unpacked(in, NULL);
    defer(call, app.delay_ms, answer_list, NULL);
}

static void answer_node(pending *p)
{
    Mcp__Agent__V1__NodeStatusResponse out = MCP__AGENT__V1__NODE_STATUS_RESPONSE__INIT;
    out.node_name = "test-node";
    out.version = "0.0.0-test";
    out.services = app.services;
    out.boot_done = true;
    mcp_grpc_server_reply_message(p->call, &out.base);
}

static void node_status(mcp_grpc_server_call *call, const uint8_t *req, size_t len, void *ud)
{
    ProtobufCMessage *in = mcp_grpc_server_unpack_or_fail(
        call, &mcp__agent__v1__node_status_request__descriptor, req, len);
    if (!in)
        return;
    protobuf_c_message_free_unpacked(in, NULL);
    defer(call, app.delay_ms, answer_node, NULL);
}

static void answer_status(pending *p)
{
    Mcp__Agent__V1__ServiceStatus out = MCP__AGENT__V1__SERVICE_STATUS__INIT;
    out.name = p->arg;
    out.active = true;
    mcp_grpc_server_reply_message(p->call, &out.base);
}

static void service_status(mcp_grpc_server_call *call, const uint8_t *req, size_t len, void *ud)
{
    Mcp__Agent__V1__ServiceRequest *in =
        (Mcp__Agent__V1__ServiceRequest *)mcp_grpc_server_unpack_or_fail(
            call, &mcp__agent__v1__service_request__descriptor, req, len);
    if (!in)
        return;
    defer(call, app.slow_ms, answer_status, in->service);
    protobuf_c_message_free_unpacked(&in->base, NULL);
}

/* ---- main ---- */

static void on_done(mcp_grpc_server *server, void *ud)
{
    mcp_log(MCP_LOG_INFO, "server stopped", NULL);
    uv_close((uv_handle_t *)&app.sigterm, NULL);
    uv_close((uv_handle_t *)&app.sigint, NULL);
}

static void on_signal(uv_signal_t *h, int signum)
{
    /* a repeated signal is a no-op: shutdown is already under way */
    mcp_log(MCP_LOG_INFO, "shutting down", "signal", signum == SIGTERM ? "TERM" : "INT", NULL);
    mcp_grpc_server_shutdown(app.server, app.grace_ms, on_done, NULL);
}

static int usage(const char *why)
{
    fprintf(stderr,
            "grpc_test_server: %s\nusage: grpc_test_server [--unix PATH] [--tcp HOST:PORT "
            "[--insecure | --cert F --key F --ca F]] [--services N] [--delay-ms MS] "
            "[--slow-ms MS] [--max-message BYTES] [--grace-ms MS]\n",
            why);
    return 2;
}

static int parse_uint(const char *s, unsigned *out)
{
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (!*s || *end || v > 0xffffffffUL)
        return -1;
    *out = (unsigned)v;
    return 0;
}

int main(int argc, char **argv)
{
    const char *unix_path = NULL, *tcp = NULL;
    mcp_grpc_tls_options tls = {0};
    mcp_grpc_server_options opts = {0};
    unsigned max_message = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--insecure") == 0) {
            tls.insecure = true;
            continue;
        }
        if (!v)
            return usage("missing value");
        i++;
        if (strcmp(a, "--unix") == 0)
            unix_path = v;
        else if (strcmp(a, "--tcp") == 0)
            tcp = v;
        else if (strcmp(a, "--cert") == 0)
            tls.cert_file = v;
        else if (strcmp(a, "--key") == 0)
            tls.key_file = v;
        else if (strcmp(a, "--ca") == 0)
            tls.ca_file = v;
        else if (strcmp(a, "--services") == 0 && parse_uint(v, &app.services) == 0)
            continue;
        else if (strcmp(a, "--delay-ms") == 0 && parse_uint(v, &app.delay_ms) == 0)
            continue;
        else if (strcmp(a, "--slow-ms") == 0 && parse_uint(v, &app.slow_ms) == 0)
            continue;
        else if (strcmp(a, "--grace-ms") == 0 && parse_uint(v, &app.grace_ms) == 0)
            continue;
        else if (strcmp(a, "--max-message") == 0 && parse_uint(v, &max_message) == 0)
            continue;
        else
            return usage(a);
    }
    if (!unix_path && !tcp)
        return usage("need --unix or --tcp");
    opts.max_message_bytes = max_message;

    uv_loop_t *loop = uv_default_loop();
    mcp_error err = {{0}};
    app.server = mcp_grpc_server_new(loop, &opts, &err);
    if (!app.server) {
        fprintf(stderr, "grpc_test_server: %s\n", err.msg);
        return 2;
    }
    struct {
        const char *path;
        mcp_grpc_handler_fn fn;
    } routes[] = {
        {"/grpc.health.v1.Health/Check", health_check},
        {"/mcp.agent.v1.AgentService/ListServices", list_services},
        {"/mcp.agent.v1.AgentService/NodeStatus", node_status},
        {"/mcp.agent.v1.AgentService/GetServiceStatus", service_status},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (mcp_grpc_server_handle(app.server, routes[i].path, routes[i].fn, NULL, &err) != 0) {
            fprintf(stderr, "grpc_test_server: %s\n", err.msg);
            return 2;
        }
    }
    int rc = 0;
    if (unix_path && mcp_grpc_server_listen_unix(app.server, unix_path, &err) != 0)
        rc = 2;
    if (rc == 0 && tcp && mcp_grpc_server_listen_tcp(app.server, tcp, &tls, &err) != 0)
        rc = 2;
    if (rc != 0) {
        fprintf(stderr, "grpc_test_server: %s\n", err.msg);
        /* close what was opened, then free */
        mcp_grpc_server_shutdown(app.server, 0, NULL, NULL);
        uv_run(loop, UV_RUN_DEFAULT);
        mcp_grpc_server_free(app.server);
        uv_loop_close(loop);
        return rc;
    }
    uv_signal_init(loop, &app.sigterm);
    uv_signal_init(loop, &app.sigint);
    uv_signal_start(&app.sigterm, on_signal, SIGTERM);
    uv_signal_start(&app.sigint, on_signal, SIGINT);
    signal(SIGPIPE, SIG_IGN);
    printf("READY port=%d\n", mcp_grpc_server_tcp_port(app.server));
    fflush(stdout);

    uv_run(loop, UV_RUN_DEFAULT);
    mcp_grpc_server_free(app.server);
    if (uv_loop_close(loop) != 0) {
        fprintf(stderr, "grpc_test_server: handles left open at exit\n");
        return 1;
    }
    return 0;
}
