/* Service definitions (SPEC §4): parsing, validation messages, spec helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mcp/service.h"
#include "mcp/util.h"

#define FIXTURE(name) MCP_FIXTURES "/services/" name

static int parse(const char *doc, mcp_service *svc, mcp_error *err)
{
    return mcp_service_parse(doc, strlen(doc), "t.toml", svc, err);
}

/* Parses doc with stderr captured; returns what was logged (the caller frees it). */
static char *capture_stderr(const char *doc, int *rc)
{
    char tmpl[] = "/tmp/mcp-stderr-XXXXXX";
    int fd = mkstemp(tmpl);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    assert_true(saved >= 0);
    assert_true(dup2(fd, 2) >= 0);
    mcp_service svc;
    mcp_error err = {{0}};
    *rc = parse(doc, &svc, &err);
    if (*rc == 0)
        mcp_service_free(&svc);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(fd);
    char *out = mcp_read_file(tmpl, NULL);
    unlink(tmpl);
    assert_non_null(out);
    return out;
}

/* ---- the SPEC §4 example ---- */

static void test_spec_example(void **state)
{
    mcp_service svc;
    mcp_error err = {{0}};
    if (mcp_service_load(FIXTURE("metacrypt.toml"), &svc, &err) != 0)
        fail_msg("%s", err.msg);
    assert_string_equal(svc.name, "metacrypt");
    assert_true(svc.active);
    assert_int_equal(svc.n_components, 1);
    mcp_component *c = &svc.components[0];
    assert_string_equal(c->name, "api");
    assert_string_equal(c->image, "localhost/metacrypt:v1");
    assert_string_equal(c->network, "mcpnet");
    assert_string_equal(c->user, "0:0");
    assert_string_equal(c->restart, "unless-stopped");
    assert_int_equal(c->ports.n, 1);
    assert_string_equal(c->ports.v[0], "127.0.0.1:18443:8443/tcp");
    assert_int_equal(c->volumes.n, 1);
    assert_string_equal(c->volumes.v[0], "/srv/metacrypt:/srv/metacrypt");
    assert_int_equal(c->cmd.n, 3);
    assert_string_equal(c->cmd.v[0], "server");
    assert_string_equal(c->cmd.v[1], "--config");
    assert_string_equal(c->cmd.v[2], "/srv/metacrypt/metacrypt.toml");
    assert_int_equal(c->env.n, 1);
    assert_string_equal(c->env.v[0], "LOG_LEVEL=info");
    assert_string_equal(c->desired_state, "running");
    assert_string_equal(c->health.check, "grpc");
    assert_int_equal(c->health.port, 8443);
    assert_string_equal(c->health.path, "/healthz");
    assert_int_equal(c->n_routes, 1);
    assert_string_equal(c->routes[0].name, "rest");
    assert_int_equal(c->routes[0].port, 8443);
    assert_string_equal(c->routes[0].mode, "l7");
    assert_string_equal(c->routes[0].hostname, "metacrypt.example.net");
    assert_int_equal(c->routes[0].host_port, 0);
    char *cn = mcp_container_name(svc.name, c->name);
    assert_string_equal(cn, "metacrypt-api");
    free(cn);
    mcp_service_free(&svc);
}

static void test_multi_component_defaults_and_order(void **state)
{
    mcp_service svc;
    mcp_error err = {{0}};
    if (mcp_service_load(FIXTURE("multi.toml"), &svc, &err) != 0)
        fail_msg("%s", err.msg);
    assert_string_equal(svc.name, "shop");
    assert_true(svc.active);
    assert_int_equal(svc.n_components, 2);
    mcp_component *c = &svc.components[0];
    assert_int_equal(c->ports.n, 3);
    assert_string_equal(c->ports.v[0], "8080");
    assert_string_equal(c->ports.v[1], "127.0.0.1::9090/udp");
    assert_string_equal(c->ports.v[2], "[::1]:7070:70");
    assert_string_equal(c->volumes.v[0], "shopdata:/var/lib/shop:rw,Z");
    assert_string_equal(c->env.v[1], "_B=two=2");
    assert_string_equal(c->restart, "on-failure:5");
    assert_string_equal(c->health.check, "http");
    assert_int_equal(c->health.port, 0);
    assert_string_equal(c->health.path, "/ready");
    assert_null(c->network);
    assert_null(c->user);
    assert_int_equal(c->n_routes, 2);
    assert_string_equal(c->routes[0].name, "web");
    assert_int_equal(c->routes[0].port, 0); /* $PORT */
    assert_string_equal(c->routes[1].name, "metrics");
    assert_string_equal(c->routes[1].mode, "l4"); /* the default */
    assert_null(c->routes[1].hostname);
    assert_string_equal(c->desired_state, "running");
    assert_string_equal(svc.components[1].desired_state, "stopped");
    assert_int_equal(svc.components[1].n_routes, 0);
    assert_null(svc.components[1].health.check);
    char *cn = mcp_container_name("shop", "shop");
    assert_string_equal(cn, "shop");
    free(cn);
    cn = mcp_container_name("shop", "worker");
    assert_string_equal(cn, "shop-worker");
    free(cn);
    mcp_service_free(&svc);
}

static void test_inactive_service(void **state)
{
    mcp_service svc;
    mcp_error err = {{0}};
    assert_int_equal(parse("name = \"x\"\nactive = false\ncomponents = [{name = \"x\", image = "
                           "\"i\"}]\n",
                           &svc, &err),
                     0);
    assert_false(svc.active);
    assert_string_equal(svc.components[0].name, "x");
    mcp_service_free(&svc);
}

/* ---- validation errors: file, line, column, key path, what ---- */

typedef struct bad_case {
    const char *doc;
    const char *where; /* "t.toml:LINE:COL: key 'PATH'" (or a prefix of it) */
    const char *what;  /* a fragment of the message */
} bad_case;

#define BASE "name = \"svc\"\n[[components]]\nname = \"api\"\nimage = \"img\"\n"

static const bad_case bad_cases[] = {
    /* ports */
    {BASE "ports = [\"80\", \"70000:80\"]\n", "t.toml:5:16: key 'components[0].ports[1]'",
     "bad port spec \"70000:80\""},
    {BASE "[[components]]\nname = \"db\"\nimage = \"img\"\nports = [\"abc\"]\n",
     "t.toml:8:10: key 'components[1].ports[0]'", "bad port spec \"abc\""},
    {BASE "ports = [\"80/sctp\"]\n", "t.toml:5:10: key 'components[0].ports[0]'", "bad port spec"},
    {BASE "ports = [\"0\"]\n", "t.toml:5:10: key 'components[0].ports[0]'", "bad port spec"},
    {BASE "ports = [\"1.2.3:80:80\"]\n", "key 'components[0].ports[0]'", "bad port spec"},
    {BASE "ports = [\"1000-1010:80\"]\n", "key 'components[0].ports[0]'", "bad port spec"},
    /* volumes */
    {BASE "volumes = [\"/a:/a\", \"rel/dir:/x\"]\n", "t.toml:5:21: key 'components[0].volumes[1]'",
     "bad volume spec \"rel/dir:/x\""},
    {BASE "volumes = [\"/a:relative\"]\n", "key 'components[0].volumes[0]'", "bad volume spec"},
    {BASE "volumes = [\"/only\"]\n", "key 'components[0].volumes[0]'", "bad volume spec"},
    {BASE "volumes = [\"/a:/b:\"]\n", "key 'components[0].volumes[0]'", "bad volume spec"},
    /* names */
    {"name = \"Bad_Name\"\n[[components]]\nname = \"a\"\nimage = \"i\"\n", "t.toml:1:8: key 'name'",
     "invalid name \"Bad_Name\""},
    {"name = \"-lead\"\n[[components]]\nname = \"a\"\nimage = \"i\"\n", "t.toml:1:8: key 'name'",
     "invalid name"},
    {"name = \"a123456789a123456789a123456789a123456789a123456789a123456789abcd\"\n[[components]]"
     "\nname = \"a\"\nimage = \"i\"\n",
     "t.toml:1:8: key 'name'", "at most 63"},
    {"name = \"svc\"\n[[components]]\nname = \"API\"\nimage = \"i\"\n",
     "t.toml:3:8: key 'components[0].name'", "invalid name \"API\""},
    {BASE "[[components.routes]]\nname = \"r_1\"\n",
     "t.toml:6:8: key 'components[0].routes[0].name'", "invalid name"},
    /* required keys */
    {"[[components]]\nname = \"a\"\nimage = \"i\"\n", "key 'name'", "missing required key"},
    {"name = \"svc\"\n", "t.toml:1:1: key 'components'", "missing required key"},
    {"name = \"svc\"\ncomponents = []\n", "t.toml:2:14: key 'components'", "at least one"},
    {"name = \"svc\"\n[[components]]\nimage = \"i\"\n", "t.toml:2:1: key 'components[0].name'",
     "missing required key"},
    {"name = \"svc\"\n[[components]]\nname = \"a\"\n", "t.toml:2:1: key 'components[0].image'",
     "missing required key"},
    {BASE "[[components.routes]]\nport = 80\n", "t.toml:5:1: key 'components[0].routes[0].name'",
     "missing required key"},
    /* duplicates */
    {BASE "[[components]]\nname = \"api\"\nimage = \"img2\"\n",
     "t.toml:6:8: key 'components[1].name'", "duplicate component name \"api\""},
    {BASE "[[components.routes]]\nname = \"r\"\n[[components.routes]]\nname = \"r\"\n",
     "t.toml:8:8: key 'components[0].routes[1].name'", "duplicate route name \"r\""},
    /* enumerations */
    {BASE "desired_state = \"paused\"\n", "t.toml:5:17: key 'components[0].desired_state'",
     "invalid value \"paused\""},
    {BASE "restart = \"sometimes\"\n", "t.toml:5:11: key 'components[0].restart'",
     "invalid restart policy \"sometimes\""},
    {BASE "restart = \"on-failure:x\"\n", "key 'components[0].restart'", "invalid restart policy"},
    {BASE "[[components.routes]]\nname = \"r\"\nmode = \"l5\"\n",
     "t.toml:7:8: key 'components[0].routes[0].mode'", "invalid value \"l5\""},
    {BASE "[[components.routes]]\nname = \"r\"\nmode = \"l7\"\n",
     "t.toml:7:8: key 'components[0].routes[0].hostname'", "needs a hostname"},
    {BASE "[[components.routes]]\nname = \"r\"\nhostname = \"bad host\"\n",
     "key 'components[0].routes[0].hostname'", "bad hostname"},
    {BASE "[components.health]\ncheck = \"icmp\"\n", "t.toml:6:9: key 'components[0].health.check'",
     "invalid value \"icmp\""},
    {BASE "[components.health]\nport = 0\n", "t.toml:6:8: key 'components[0].health.port'",
     "out of range"},
    {BASE "[components.health]\npath = \"healthz\"\n", "key 'components[0].health.path'",
     "must start with '/'"},
    {BASE "[components.health]\ninterval = \"0s\"\n",
     "t.toml:6:12: key 'components[0].health.interval'", "must be positive"},
    {BASE "[components.health]\ninterval = \"10\"\n",
     "t.toml:6:12: key 'components[0].health.interval'", "missing unit"},
    {BASE "[components.health]\ninterval = 10\n",
     "t.toml:6:12: key 'components[0].health.interval'", "expected a string, got integer"},
    {BASE "[components.health]\ntimeout = \"-1s\"\n",
     "t.toml:6:11: key 'components[0].health.timeout'", "negative"},
    {BASE "[components.health]\ntimeout = \"0ms\"\n",
     "t.toml:6:11: key 'components[0].health.timeout'", "must be positive"},
    {BASE "[components.health]\nfailure_threshold = 0\n",
     "t.toml:6:21: key 'components[0].health.failure_threshold'", "0 out of range 1.."},
    {BASE "[components.health]\nfailure_threshold = \"3\"\n",
     "t.toml:6:21: key 'components[0].health.failure_threshold'", "expected an integer"},
    {BASE "ports = [\"127.0.0.1:8080:80\"]\n[components.health]\nport = 8081\n",
     "t.toml:7:8: key 'components[0].health.port'", "container port 8081 is not published"},
    {BASE "[components.health]\nport = 9000\n[[components.routes]]\nname = \"r\"\nport = 80\n",
     "t.toml:6:8: key 'components[0].health.port'", "container port 9000 is not published"},
    {BASE "restart = \"on-success\"\n", "t.toml:5:11: key 'components[0].restart'",
     "invalid restart policy \"on-success\""},
    {BASE "[[components.routes]]\nname = \"r\"\nport = 70000\n",
     "t.toml:7:8: key 'components[0].routes[0].port'", "port 70000 out of range"},
    /* env */
    {BASE "env = [\"OK=1\", \"1BAD=x\"]\n", "t.toml:5:16: key 'components[0].env[1]'",
     "bad env entry \"1BAD=x\""},
    {BASE "env = [\"NOEQUALS\"]\n", "key 'components[0].env[0]'", "bad env entry"},
    {BASE "env = [\"BAD-KEY=1\"]\n", "key 'components[0].env[0]'", "bad env entry"},
    /* other strings */
    {BASE "image = \"x\"\n", "t.toml:5", "uplicate"}, /* a TOML error: key defined twice */
    {"name = \"svc\"\n[[components]]\nname = \"a\"\nimage = \"has space\"\n",
     "t.toml:4:9: key 'components[0].image'", "bad image"},
    {BASE "user = \"\"\n", "t.toml:5:8: key 'components[0].user'", "bad user"},
    /* wrong types */
    {"name = 5\n", "t.toml:1:8: key 'name'", "expected a string, got integer"},
    {"name = \"svc\"\nactive = \"yes\"\n", "t.toml:2:10: key 'active'",
     "expected a bool, got string"},
    {"name = \"svc\"\ncomponents = \"x\"\n", "t.toml:2:14: key 'components'",
     "expected an array, got string"},
    {"name = \"svc\"\ncomponents = [1]\n", "t.toml:2:15: key 'components[0]'",
     "expected a table, got integer"},
    {"name = \"svc\"\n[[components]]\nname = \"a\"\nimage = 1\n",
     "t.toml:4:9: key 'components[0].image'", "expected a string, got integer"},
    {BASE "ports = \"80\"\n", "t.toml:5:9: key 'components[0].ports'",
     "expected an array, got string"},
    {BASE "ports = [80]\n", "t.toml:5:10: key 'components[0].ports[0]'",
     "expected a string, got integer"},
    {BASE "cmd = [\"a\", [\"b\"]]\n", "t.toml:5:13: key 'components[0].cmd[1]'",
     "expected a string, got array"},
    {BASE "health = 1\n", "t.toml:5:10: key 'components[0].health'",
     "expected a table, got integer"},
    {BASE "routes = {}\n", "t.toml:5:10: key 'components[0].routes'",
     "expected an array, got table"},
    {BASE "[[components.routes]]\nname = \"r\"\nport = \"80\"\n",
     "t.toml:7:8: key 'components[0].routes[0].port'", "expected an integer, got string"},
    {BASE "[components.health]\nport = 1.5\n", "t.toml:6:8: key 'components[0].health.port'",
     "expected an integer, got float"},
    {BASE "desired_state = true\n", "t.toml:5:17: key 'components[0].desired_state'",
     "expected a string, got bool"},
    /* TOML syntax */
    {"name = \"svc\"\n[[components]\n", "t.toml:2:", ""},
    {"name = \"unterminated\n", "t.toml:1:", ""},
};

static void test_health_liveness_fields(void **state)
{
    (void)state;
    mcp_service svc;
    mcp_error err = {{0}};
    if (parse(BASE "[components.health]\ncheck = \"tcp\"\ninterval = \"2m30s\"\n"
                   "timeout = \"250ms\"\nfailure_threshold = 7\n",
              &svc, &err) != 0)
        fail_msg("%s", err.msg);
    const mcp_health *h = &svc.components[0].health;
    assert_int_equal(h->interval_ms, 150000);
    assert_int_equal(h->timeout_ms, 250);
    assert_int_equal(h->failure_threshold, 7);
    mcp_service_free(&svc);
    /* A health table without them takes the defaults. */
    if (parse(BASE "[components.health]\ncheck = \"grpc\"\n", &svc, &err) != 0)
        fail_msg("%s", err.msg);
    h = &svc.components[0].health;
    assert_int_equal(h->interval_ms, 10000);
    assert_int_equal(h->timeout_ms, 1000);
    assert_int_equal(h->failure_threshold, 3);
    mcp_service_free(&svc);
    /* Every restart value the supervisor knows is accepted; unset stays NULL. */
    static const char *const restarts[] = {"no", "on-failure", "always", "unless-stopped"};
    for (size_t i = 0; i < 4; i++) {
        char doc[256];
        snprintf(doc, sizeof doc, BASE "restart = \"%s\"\n", restarts[i]);
        if (parse(doc, &svc, &err) != 0)
            fail_msg("%s: %s", restarts[i], err.msg);
        assert_string_equal(svc.components[0].restart, restarts[i]);
        mcp_service_free(&svc);
    }
    if (parse(BASE, &svc, &err) != 0)
        fail_msg("%s", err.msg);
    assert_null(svc.components[0].restart);
    mcp_service_free(&svc);
}

static void test_validation_errors(void **state)
{
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const bad_case *bc = &bad_cases[i];
        mcp_service svc;
        mcp_error err = {{0}};
        int rc = parse(bc->doc, &svc, &err);
        if (rc == 0) {
            mcp_service_free(&svc);
            fail_msg("case %zu was accepted:\n%s", i, bc->doc);
        }
        if (strncmp(err.msg, bc->where, strlen(bc->where)) != 0 && !strstr(err.msg, bc->where))
            fail_msg("case %zu: message \"%s\" lacks \"%s\"", i, err.msg, bc->where);
        if (!strstr(err.msg, bc->what))
            fail_msg("case %zu: message \"%s\" lacks \"%s\"", i, err.msg, bc->what);
        if (strncmp(err.msg, "t.toml:", 7) != 0)
            fail_msg("case %zu: message \"%s\" does not start with the file", i, err.msg);
        /* A failed parse leaves nothing to free. */
        assert_null(svc.name);
        assert_null(svc.components);
    }
}

static void test_unknown_keys_are_listed_with_the_nearest_key(void **state)
{
    (void)state;
    int rc = -1;
    /* Listed for the caller to say once, never logged here. */
    char *log = capture_stderr(BASE "colour = \"red\"\n[components.health]\ncheck = \"tcp\"\n"
                                    "retries = 5\n",
                               &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(log, "");
    free(log);
    mcp_service svc;
    mcp_error err = {{0}};
    const char *doc = "nmae = \"x\"\nname = \"x\"\n[[components]]\nname = \"x\"\nimage = \"i\"\n"
                      "comand = [\"run\"]\ncolour = \"red\"\n";
    assert_int_equal(parse(doc, &svc, &err), 0);
    assert_int_equal(svc.unknown.n, 3);
    assert_string_equal(svc.unknown.v[0], "t.toml:1:1: unknown key 'nmae' (did you mean 'name'?)");
    assert_string_equal(svc.unknown.v[1],
                        "t.toml:6:1: unknown key 'components[0].comand' (did you mean 'cmd'?)");
    assert_string_equal(svc.unknown.v[2], "t.toml:7:1: unknown key 'components[0].colour'");
    mcp_service_free(&svc);
    assert_int_equal(svc.unknown.n, 0);
}

static void test_load_missing_file(void **state)
{
    mcp_service svc;
    mcp_error err = {{0}};
    assert_int_equal(mcp_service_load("/nonexistent/svc.toml", &svc, &err), -1);
    assert_non_null(strstr(err.msg, "/nonexistent/svc.toml"));
    assert_non_null(strstr(err.msg, "No such file"));
}

/* ---- spec helpers ---- */

static void test_port_specs(void **state)
{
    const char *good[] = {"80",
                          "8080:80",
                          "127.0.0.1:8080:80",
                          "127.0.0.1::80",
                          "[::1]:8080:80/udp",
                          "80/tcp",
                          "0.0.0.0:1:65535",
                          "[::1]::80",
                          NULL};
    const char *bad[] = {"",
                         "0",
                         "65536",
                         "8080:",
                         ":80",
                         "a:80",
                         "1.2.3:8080:80",
                         "127.0.0.1:8080:80/sctp",
                         "::1:8080:80",
                         "[::1]:80",
                         "1-10:80",
                         "8080:80:90:100",
                         "+80",
                         " 80",
                         "[zz]:1:2",
                         "127.0.0.1:8080:80/",
                         "80/tcp/udp",
                         "999999",
                         "1.2.3.4:80",
                         "[::1]8080:80",
                         NULL};
    for (int i = 0; good[i]; i++)
        if (!mcp_port_spec_parse(good[i], NULL, 0, NULL, NULL, NULL, 0))
            fail_msg("rejected good port spec \"%s\"", good[i]);
    for (int i = 0; bad[i]; i++)
        if (mcp_port_spec_parse(bad[i], NULL, 0, NULL, NULL, NULL, 0))
            fail_msg("accepted bad port spec \"%s\"", bad[i]);

    char ip[64], proto[8];
    int host = -1, ctr = -1;
    assert_true(mcp_port_spec_parse("127.0.0.1:18443:8443/tcp", ip, sizeof ip, &host, &ctr, proto,
                                    sizeof proto));
    assert_string_equal(ip, "127.0.0.1");
    assert_int_equal(host, 18443);
    assert_int_equal(ctr, 8443);
    assert_string_equal(proto, "tcp");
    assert_true(
        mcp_port_spec_parse("[::1]:7070:70/udp", ip, sizeof ip, &host, &ctr, proto, sizeof proto));
    assert_string_equal(ip, "::1");
    assert_int_equal(host, 7070);
    assert_int_equal(ctr, 70);
    assert_string_equal(proto, "udp");
    assert_true(mcp_port_spec_parse("9000", ip, sizeof ip, &host, &ctr, proto, sizeof proto));
    assert_string_equal(ip, "");
    assert_int_equal(host, 0);
    assert_int_equal(ctr, 9000);
    assert_string_equal(proto, "tcp");
    assert_true(mcp_port_spec_parse("8080:80", ip, sizeof ip, &host, &ctr, NULL, 0));
    assert_int_equal(host, 8080);
    assert_int_equal(ctr, 80);
}

static void test_volume_specs(void **state)
{
    const char *good[] = {
        "/srv/a:/srv/a",           "data:/data", "/a:/b:ro", "/a:/b:ro,Z", "my.vol_1:/x:U",
        "/a:/b:idmap=uids=0-1-10", NULL};
    const char *bad[] = {"/a",          "a:b",     "/a:b",      ":/b",         "/a:", "/a:/b:",
                         "/a:/b:ro,,z", "-vol:/x", "/a:/b:r o", "bad name:/x", "",    NULL};
    for (int i = 0; good[i]; i++)
        if (!mcp_volume_spec_valid(good[i]))
            fail_msg("rejected good volume spec \"%s\"", good[i]);
    for (int i = 0; bad[i]; i++)
        if (mcp_volume_spec_valid(bad[i]))
            fail_msg("accepted bad volume spec \"%s\"", bad[i]);
}

static void test_names(void **state)
{
    assert_true(mcp_name_valid("a"));
    assert_true(mcp_name_valid("0abc-def"));
    assert_true(mcp_name_valid("a123456789a123456789a123456789a123456789a123456789a123456789abc"));
    assert_false(
        mcp_name_valid("a123456789a123456789a123456789a123456789a123456789a123456789abcd"));
    assert_false(mcp_name_valid(""));
    assert_false(mcp_name_valid(NULL));
    assert_false(mcp_name_valid("-a"));
    assert_false(mcp_name_valid("A"));
    assert_false(mcp_name_valid("a_b"));
    assert_false(mcp_name_valid("a.b"));
    assert_false(mcp_name_valid("é"));
}

/* ---- robustness ---- */

/* Every prefix of a valid document parses or fails cleanly, never crashes. */
static void test_every_truncation_is_handled(void **state)
{
    const char *files[] = {FIXTURE("metacrypt.toml"), FIXTURE("multi.toml")};
    for (size_t f = 0; f < 2; f++) {
        size_t len = 0;
        char *text = mcp_read_file(files[f], &len);
        assert_non_null(text);
        int ok = 0;
        for (size_t n = 0; n <= len; n++) {
            /* An exact-size heap copy lets ASan catch any read past the end. */
            char *copy = malloc(n ? n : 1);
            assert_non_null(copy);
            memcpy(copy, text, n);
            mcp_service svc;
            mcp_error err = {{0}};
            /* Warnings about partial keys are expected; keep the output quiet. */
            int rc = mcp_service_parse(copy, n, "trunc.toml", &svc, &err);
            if (rc == 0) {
                ok++;
                assert_non_null(svc.name);
                assert_true(svc.n_components >= 1);
                mcp_service_free(&svc);
            } else {
                assert_int_equal(rc, -1);
                if (strncmp(err.msg, "trunc.toml:", 11) != 0)
                    fail_msg("prefix %zu: message \"%s\" lacks the file", n, err.msg);
            }
            free(copy);
        }
        assert_true(ok >= 1); /* at least the whole document */
        free(text);
    }
}

/* Every byte of a valid document replaced by each of a few troublesome bytes:
 * the result parses or fails with a located message, never crashes. */
static void test_byte_mutations_are_handled(void **state)
{
    size_t len = 0;
    char *text = mcp_read_file(FIXTURE("multi.toml"), &len);
    assert_non_null(text);
    const char subst[] = {'"', '[', ']', '=', '\n', '\0', '\\', '{', '#', 'x', '9', '.', '\''};
    char *copy = malloc(len);
    assert_non_null(copy);
    size_t failed = 0;
    for (size_t i = 0; i < len; i++) {
        for (size_t k = 0; k < sizeof subst; k++) {
            memcpy(copy, text, len);
            copy[i] = subst[k];
            mcp_service svc;
            mcp_error err = {{0}};
            if (mcp_service_parse(copy, len, "m.toml", &svc, &err) == 0) {
                assert_true(svc.n_components >= 1);
                mcp_service_free(&svc);
                continue;
            }
            failed++;
            if (strncmp(err.msg, "m.toml:", 7) != 0)
                fail_msg("byte %zu -> %d: message \"%s\" lacks the file", i, subst[k], err.msg);
        }
    }
    assert_true(failed > 0);
    free(copy);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_example),
        cmocka_unit_test(test_multi_component_defaults_and_order),
        cmocka_unit_test(test_inactive_service),
        cmocka_unit_test(test_validation_errors),
        cmocka_unit_test(test_health_liveness_fields),
        cmocka_unit_test(test_unknown_keys_are_listed_with_the_nearest_key),
        cmocka_unit_test(test_load_missing_file),
        cmocka_unit_test(test_port_specs),
        cmocka_unit_test(test_volume_specs),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_every_truncation_is_handled),
        cmocka_unit_test(test_byte_mutations_are_handled),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
