/* The config loader: SPEC §3 example, defaults, warnings and every error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "mcp/config.h"

#define FIXTURE(name) MCP_FIXTURES "/config/" name

static bool is_zeroed(const mcp_config *cfg)
{
    static const mcp_config zero;
    return memcmp(cfg, &zero, sizeof zero) == 0;
}

/* Writes text to a fresh temporary file; returns its malloc'ed path. */
static char *write_tmp(const char *text)
{
    char *path = strdup("/tmp/mcp-test-config-XXXXXX");
    assert_non_null(path);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    return path;
}

/* Loads path with stderr captured; returns what was logged (malloc'ed). */
static char *load_capturing(const char *path, mcp_config *cfg, mcp_error *err, int *rc)
{
    fflush(stderr);
    FILE *cap = tmpfile();
    assert_non_null(cap);
    int saved = dup(2);
    assert_true(saved >= 0);
    assert_true(dup2(fileno(cap), 2) >= 0);
    *rc = mcp_config_load(path, cfg, err);
    fflush(stderr);
    assert_true(dup2(saved, 2) >= 0);
    close(saved);
    long size = ftell(cap);
    assert_true(size >= 0);
    char *out = calloc(1, (size_t)size + 1);
    assert_non_null(out);
    rewind(cap);
    assert_int_equal(fread(out, 1, (size_t)size, cap), (size_t)size);
    fclose(cap);
    return out;
}

static void test_full_example(void **state)
{
    (void)state;
    mcp_config cfg;
    mcp_error err = {{0}};
    int rc = mcp_config_load(FIXTURE("full.toml"), &cfg, &err);
    if (rc != 0)
        print_error("%s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_string_equal(cfg.path, FIXTURE("full.toml"));
    assert_string_equal(cfg.node_name, "rift");
    assert_string_equal(cfg.grpc_addr, "127.0.0.1:9444");
    assert_false(cfg.insecure_loopback);
    assert_string_equal(cfg.socket, "/run/mcp-agent/agent.sock");
    assert_string_equal(cfg.container_runtime, "podman");
    assert_int_equal(cfg.podman_args.n, 4);
    assert_string_equal(cfg.podman_args.v[0], "--root");
    assert_string_equal(cfg.podman_args.v[3], "/y");
    assert_string_equal(cfg.podman, "/usr/bin/podman");
    assert_int_equal(cfg.podman_timeout_ms, 150000);
    assert_int_equal(cfg.port_min, 10000);
    assert_int_equal(cfg.port_max, 19999);
    assert_string_equal(cfg.tls_cert, "/etc/mcp-agent/agent.pem");
    assert_string_equal(cfg.tls_key, "/etc/mcp-agent/agent.key");
    assert_string_equal(cfg.tls_client_ca, "/etc/mcp-agent/clients-ca.pem");
    assert_string_equal(cfg.db_path, "/srv/mcp/mcp.db");
    assert_string_equal(cfg.mcproxy_socket, "/srv/mc-proxy/mc-proxy.sock");
    assert_string_equal(cfg.mcproxy_cert_dir, "/srv/mc-proxy/certs");
    assert_string_equal(cfg.mcproxy_listener, ":443");
    assert_string_equal(cfg.metacrypt_server_url, "https://metacrypt.example:8443");
    assert_string_equal(cfg.metacrypt_ca_cert, "/etc/mcp-agent/metacrypt-ca.pem");
    assert_string_equal(cfg.metacrypt_mount, "pki");
    assert_string_equal(cfg.metacrypt_issuer, "web");
    assert_string_equal(cfg.metacrypt_token_path, "/etc/mcp-agent/metacrypt.token");
    assert_int_equal(cfg.monitor_interval_ms, 60000);
    assert_string_equal(cfg.log_level, "info");
    assert_string_equal(cfg.log_format, "text");
    assert_string_equal(cfg.policy_dir, "/etc/mcp-agent/policies");

    assert_int_equal(cfg.n_stages, 2);
    assert_string_equal(cfg.stages[0].name, "foundation");
    assert_int_equal(cfg.stages[0].services.n, 2);
    assert_string_equal(cfg.stages[0].services.v[0], "mcias");
    assert_string_equal(cfg.stages[0].services.v[1], "mcns");
    assert_int_equal(cfg.stages[0].timeout_ms, 120000);
    assert_string_equal(cfg.stages[0].health, "tcp");
    assert_int_equal(cfg.stages[0].line, 43);
    /* The second stage takes the stage defaults. */
    assert_string_equal(cfg.stages[1].name, "apps");
    assert_int_equal(cfg.stages[1].timeout_ms, 60000);
    assert_string_equal(cfg.stages[1].health, "tcp");
    assert_int_equal(cfg.stages[1].line, 49);

    mcp_config_free(&cfg);
    assert_true(is_zeroed(&cfg));
    mcp_config_free(&cfg); /* freeing twice is harmless */
}

static void test_monitor_keys(void **state)
{
    (void)state;
    char *path = write_tmp("[monitor]\ninterval = \"2s\"\ndrift = \"fix\"\nkeep_events = 250\n");
    mcp_config cfg;
    mcp_error err = {{0}};
    if (mcp_config_load(path, &cfg, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(cfg.monitor_interval_ms, 2000);
    assert_string_equal(cfg.monitor_drift, "fix");
    assert_int_equal(cfg.keep_events, 250);
    mcp_config_free(&cfg);
    unlink(path);
    free(path);
}

static void test_defaults(void **state)
{
    (void)state;
    mcp_config cfg;
    assert_int_equal(mcp_config_defaults(&cfg), 0);
    char host[256] = "";
    assert_int_equal(gethostname(host, sizeof host), 0);
    assert_string_equal(cfg.node_name, host[0] ? host : "localhost");
    assert_null(cfg.path);
    assert_string_equal(cfg.grpc_addr, "");
    assert_false(cfg.insecure_loopback);
    assert_string_equal(cfg.socket, "/run/mcp-agent/agent.sock");
    assert_string_equal(cfg.pull, "missing");
    assert_string_equal(cfg.container_runtime, "podman");
    assert_int_equal(cfg.podman_args.n, 0);
    assert_string_equal(cfg.podman, "podman");
    assert_int_equal(cfg.podman_timeout_ms, 120000);
    assert_int_equal(cfg.port_min, 10000);
    assert_int_equal(cfg.port_max, 19999);
    assert_null(cfg.tls_cert);
    assert_null(cfg.tls_key);
    assert_null(cfg.tls_client_ca);
    assert_string_equal(cfg.db_path, "./mcp-agent.db");
    assert_null(cfg.mcproxy_socket);
    assert_string_equal(cfg.mcproxy_listener, ":443");
    assert_string_equal(cfg.metacrypt_mount, "pki");
    assert_string_equal(cfg.metacrypt_issuer, "web");
    assert_int_equal(cfg.monitor_interval_ms, 10000);
    assert_string_equal(cfg.monitor_drift, "report");
    assert_int_equal(cfg.keep_events, 10000);
    assert_string_equal(cfg.log_level, "info");
    assert_string_equal(cfg.log_format, "text");
    assert_null(cfg.policy_dir);
    assert_int_equal(cfg.n_stages, 0);
    mcp_config_free(&cfg);
    assert_true(is_zeroed(&cfg));
}

static void test_empty_file_gives_defaults(void **state)
{
    (void)state;
    char *path = write_tmp("# nothing but a comment\n");
    mcp_config cfg;
    mcp_error err = {{0}};
    assert_int_equal(mcp_config_load(path, &cfg, &err), 0);
    assert_string_equal(cfg.path, path);
    assert_string_equal(cfg.db_path, "./mcp-agent.db");
    assert_string_equal(cfg.container_runtime, "podman");
    assert_int_equal(cfg.n_stages, 0);
    mcp_config_free(&cfg);
    unlink(path);
    free(path);
}

static void test_relative_paths_and_choices(void **state)
{
    (void)state;
    mcp_config cfg;
    mcp_error err = {{0}};
    assert_int_equal(mcp_config_load(FIXTURE("relative.toml"), &cfg, &err), 0);
    assert_string_equal(cfg.db_path, "state/mcp.db");
    assert_string_equal(cfg.policy_dir, "../policies");
    assert_string_equal(cfg.log_level, "debug");
    assert_string_equal(cfg.log_format, "json");
    assert_string_equal(cfg.container_runtime, "fake");
    assert_true(cfg.insecure_loopback);
    assert_int_equal(cfg.port_min, 20000);
    assert_int_equal(cfg.port_max, 20010);
    mcp_config_free(&cfg);
}

static void test_unknown_keys_warn_but_load(void **state)
{
    (void)state;
    mcp_config cfg;
    mcp_error err = {{0}};
    int rc;
    char *log = load_capturing(FIXTURE("unknown.toml"), &cfg, &err, &rc);
    if (rc != 0)
        print_error("%s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_string_equal(cfg.node_name, "n1");
    assert_int_equal(cfg.n_stages, 1);
    assert_string_equal(cfg.stages[0].name, "only");
    /* Each warning names the file, the line and the full key. */
    assert_non_null(strstr(log, "unknown config key"));
    assert_non_null(strstr(log, "file=" FIXTURE("unknown.toml") " line=4 key=agent.colour"));
    assert_non_null(strstr(log, "unknown config section"));
    assert_non_null(strstr(log, "line=6 key=gadgets"));
    assert_non_null(strstr(log, "line=11 key=boot.sequence[0].retries"));
    assert_non_null(strstr(log, "level=WARN"));
    free(log);
    mcp_config_free(&cfg);
}

static void test_unknown_keys_name_the_nearest_key_once(void **state)
{
    (void)state;
    char *path = write_tmp("[agent]\npodman_timout = \"5s\"\npull = \"never\"\n"
                           "[polcy]\ndir = \"x\"\n[monitor]\ncolour = 1\n");
    mcp_config cfg;
    mcp_error err = {{0}};
    int rc;
    char *log = load_capturing(path, &cfg, &err, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(cfg.n_warnings, 3);
    assert_string_equal(cfg.pull, "never");
    assert_non_null(strstr(log, "key=agent.podman_timout did_you_mean=agent.podman_timeout"));
    assert_non_null(strstr(log, "key=polcy did_you_mean=policy"));
    assert_non_null(strstr(log, "key=monitor.colour\n")); /* no near key: no suggestion */
    /* each said once */
    const char *first = strstr(log, "podman_timout");
    assert_null(strstr(strstr(first, "\n"), "podman_timout"));
    free(log);
    mcp_config_free(&cfg);
    unlink(path);
    free(path);
}

static void test_bad_pull_mode_is_an_error(void **state)
{
    (void)state;
    char *path = write_tmp("[agent]\npull = \"always\"\n");
    mcp_config cfg;
    mcp_error err = {{0}};
    assert_int_equal(mcp_config_load(path, &cfg, &err), -1);
    assert_non_null(strstr(err.msg, "agent.pull"));
    assert_non_null(strstr(err.msg, "\"always\""));
    unlink(path);
    free(path);
}

static void test_missing_file(void **state)
{
    (void)state;
    mcp_config cfg;
    mcp_error err = {{0}};
    assert_int_equal(mcp_config_load("/nonexistent/mcp-agent.toml", &cfg, &err), -1);
    assert_string_equal(err.msg, "/nonexistent/mcp-agent.toml: No such file or directory");
    assert_true(is_zeroed(&cfg));
    /* A directory is unreadable as a config too. */
    assert_int_equal(mcp_config_load("/tmp", &cfg, &err), -1);
    assert_string_equal(err.msg, "/tmp: Is a directory");
    assert_true(is_zeroed(&cfg));
}

static void test_syntax_error_names_file_line_col(void **state)
{
    (void)state;
    mcp_config cfg;
    mcp_error err = {{0}};
    assert_int_equal(mcp_config_load(FIXTURE("syntax_error.toml"), &cfg, &err), -1);
    const char *want = FIXTURE("syntax_error.toml") ":3:13: ";
    if (strncmp(err.msg, want, strlen(want)) != 0)
        print_error("got %s\n", err.msg);
    assert_memory_equal(err.msg, want, strlen(want));
    assert_true(is_zeroed(&cfg));
}

static void test_bad_health_fixture(void **state)
{
    (void)state;
    mcp_config cfg;
    mcp_error err = {{0}};
    assert_int_equal(mcp_config_load(FIXTURE("bad_health.toml"), &cfg, &err), -1);
    assert_string_equal(
        err.msg,
        FIXTURE("bad_health.toml") ":7:10: key 'boot.sequence[1].health': "
                                   "unknown health method \"ftp\" (want tcp, grpc or http)");
    assert_true(is_zeroed(&cfg));
}

/* Each bad document must fail with "PATH:" + the expected suffix. */
static void test_error_cases(void **state)
{
    (void)state;
    static const struct {
        const char *doc;
        const char *want; /* the message after "PATH:" */
    } cases[] = {
        {"[agent]\nsocket = 5\n", "2:10: key 'agent.socket': expected a string, got integer"},
        {"[agent]\ninsecure_loopback = \"yes\"\n",
         "2:21: key 'agent.insecure_loopback': expected a bool, got string"},
        {"[agent]\npodman_args = \"--root /x\"\n",
         "2:15: key 'agent.podman_args': expected an array, got string"},
        {"[agent]\npodman_args = [\"--root\", 7]\n",
         "2:26: key 'agent.podman_args[1]': expected a string, got integer"},
        {"[agent]\ncontainer_runtime = \"docker\"\n",
         "2:21: key 'agent.container_runtime': unknown container runtime \"docker\" (want podman "
         "or fake)"},
        {"[agent]\nport_range = \"19999-10000\"\n",
         "2:14: key 'agent.port_range': port range \"19999-10000\": minimum is greater than "
         "maximum"},
        {"[agent]\nport_range = \"0-100\"\n",
         "2:14: key 'agent.port_range': port range \"0-100\": ports must be between 1 and 65535"},
        {"[agent]\nport_range = \"10000-70000\"\n",
         "2:14: key 'agent.port_range': port range \"10000-70000\": ports must be between 1 and "
         "65535"},
        {"[agent]\nport_range = \"10000\"\n", "2:14: key 'agent.port_range': invalid port range "
                                              "\"10000\" (want MIN-MAX, e.g. \"10000-19999\")"},
        {"[agent]\nport_range = \"a-b\"\n", "2:14: key 'agent.port_range': invalid port range "
                                            "\"a-b\" (want MIN-MAX, e.g. \"10000-19999\")"},
        {"[agent]\nport_range = 10000\n",
         "2:14: key 'agent.port_range': expected a string, got integer"},
        {"[agent]\npodman_timeout = \"-1s\"\n",
         "2:18: key 'agent.podman_timeout': negative duration \"-1s\""},
        {"[monitor]\ninterval = \"5\"\n",
         "2:12: key 'monitor.interval': missing unit in \"5\" (use ns, us, ms, s, m or h)"},
        {"[monitor]\ninterval = \"0s\"\n",
         "2:12: key 'monitor.interval': duration \"0s\" must be positive"},
        {"[monitor]\ninterval = 60\n",
         "2:12: key 'monitor.interval': expected a string, got integer"},
        {"[monitor]\ndrift = \"repair\"\n",
         "2:9: key 'monitor.drift': unknown drift mode \"repair\" (want report or fix)"},
        {"[monitor]\ndrift = true\n", "2:9: key 'monitor.drift': expected a string, got bool"},
        {"[monitor]\nkeep_events = 0\n",
         "2:15: key 'monitor.keep_events': must be a positive integer, got 0"},
        {"[monitor]\nkeep_events = -5\n",
         "2:15: key 'monitor.keep_events': must be a positive integer, got -5"},
        {"[monitor]\nkeep_events = \"100\"\n",
         "2:15: key 'monitor.keep_events': expected an integer, got string"},
        {"[monitor]\nkeep_events = 1.5\n",
         "2:15: key 'monitor.keep_events': expected an integer, got float"},
        {"[log]\nlevel = \"verbose\"\n",
         "2:9: key 'log.level': unknown log level \"verbose\" (want debug, info, warn or error)"},
        {"[log]\nformat = \"xml\"\n",
         "2:10: key 'log.format': unknown log format \"xml\" (want text or json)"},
        {"[database]\npath = \"a\\u0000b\"\n",
         "2:8: key 'database.path': must not contain NUL bytes"},
        {"agent = 5\n", "1:9: key 'agent': expected a table, got integer"},
        {"[boot]\nsequence = 1\n",
         "2:12: key 'boot.sequence': expected an array of tables ([[boot.sequence]]), got integer"},
        {"[boot]\nsequence = [1]\n", "2:13: key 'boot.sequence[0]': expected a table, got integer"},
        {"[[boot.sequence]]\nservices = [\"a\"]\n",
         "1:1: key 'boot.sequence[0]': a boot stage needs a name"},
        {"[[boot.sequence]]\nname = \"\"\n",
         "2:8: key 'boot.sequence[0].name': a boot stage name must not be empty"},
        {"[[boot.sequence]]\nname = \"a\"\n[[boot.sequence]]\nname = "
         "\"b\"\n[[boot.sequence]]\nname = \"a\"\n",
         "6:8: key 'boot.sequence[2].name': duplicate boot stage \"a\" (also boot.sequence[0], "
         "line 1)"},
        {"[[boot.sequence]]\nname = \"a\"\ntimeout = \"soon\"\n",
         "3:11: key 'boot.sequence[0].timeout': invalid duration \"soon\""},
        {"[[boot.sequence]]\nname = \"a\"\nservices = [\"x\", true]\n",
         "3:18: key 'boot.sequence[0].services[1]': expected a string, got bool"},
        {"[[boot.sequence]]\nname = 5\n",
         "2:8: key 'boot.sequence[0].name': expected a string, got integer"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *path = write_tmp(cases[i].doc);
        mcp_config cfg;
        mcp_error err = {{0}};
        int rc = mcp_config_load(path, &cfg, &err);
        char want[1024];
        snprintf(want, sizeof want, "%s:%s", path, cases[i].want);
        if (rc != -1 || strcmp(err.msg, want) != 0)
            print_error("case %zu:\n got: %s\nwant: %s\n", i, err.msg, want);
        assert_int_equal(rc, -1);
        assert_string_equal(err.msg, want);
        assert_true(is_zeroed(&cfg));
        unlink(path);
        free(path);
    }
}

/* Later values replace earlier ones without leaking (ASan checks this). */
static void test_inline_sequence_and_values_replace_defaults(void **state)
{
    (void)state;
    char *path = write_tmp(
        "boot = { sequence = [ { name = \"one\", health = \"grpc\", timeout = \"1m30s\" },\n"
        "                      { name = \"two\", health = \"http\", services = [] } ] }\n"
        "[agent]\nnode_name = \"\"\nsocket = \"rel/agent.sock\"\n");
    mcp_config cfg;
    mcp_error err = {{0}};
    int rc = mcp_config_load(path, &cfg, &err);
    if (rc != 0)
        print_error("%s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(cfg.n_stages, 2);
    assert_string_equal(cfg.stages[0].health, "grpc");
    assert_int_equal(cfg.stages[0].timeout_ms, 90000);
    assert_int_equal(cfg.stages[0].line, 1);
    assert_string_equal(cfg.stages[1].health, "http");
    assert_int_equal(cfg.stages[1].services.n, 0);
    assert_string_equal(cfg.node_name, "");
    assert_string_equal(cfg.socket, "rel/agent.sock");
    mcp_config_free(&cfg);
    unlink(path);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_example),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_monitor_keys),
        cmocka_unit_test(test_empty_file_gives_defaults),
        cmocka_unit_test(test_relative_paths_and_choices),
        cmocka_unit_test(test_unknown_keys_warn_but_load),
        cmocka_unit_test(test_unknown_keys_name_the_nearest_key_once),
        cmocka_unit_test(test_bad_pull_mode_is_an_error),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_syntax_error_names_file_line_col),
        cmocka_unit_test(test_bad_health_fixture),
        cmocka_unit_test(test_error_cases),
        cmocka_unit_test(test_inline_sequence_and_values_replace_defaults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
