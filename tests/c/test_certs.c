/* Certificates: checks of real certificates made with the openssl CLI
 * (valid, missing SAN, expiring, wildcard, garbage), the atomic writer, and
 * the Metacrypt exchange against fake_metacrypt.py (a real HTTPS CA issuing
 * real certificates), including every way its answer can be refused. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include "mcp/certs.h"

#include "../fixtures/peers/peer.h"

static struct {
    char dir[128];
    char ca_dir[160], record[160], control[160], token[160], bad_token[160], empty_token[160];
    char url[64];
    peer ca;
    int seq;
} G;

/* openssl gets this long for each certificate, rm -rf for the scratch dir. */
#define RUN_TIMEOUT_MS 30000

/* A self-signed certificate dir/name.pem + dir/name.key: subject CN=cn,
 * subjectAltName san (NULL: none), valid for days. */
static void make_cert(const char *name, const char *cn, const char *san, const char *days)
{
    char *cert = mcp_sprintf("%s/%s.pem", G.dir, name),
         *key = mcp_sprintf("%s/%s.key", G.dir, name);
    assert_int_equal(make_cert_at(cert, key, cn, san, days, RUN_TIMEOUT_MS), 0);
    free(cert);
    free(key);
}

static char *path_in(const char *name)
{
    return mcp_sprintf("%s/%s", G.dir, name);
}

static int group_setup(void **state)
{
    if (test_dir_make(G.dir, sizeof G.dir, "certs") != 0)
        return -1;
    snprintf(G.ca_dir, sizeof G.ca_dir, "%s/ca", G.dir);
    snprintf(G.record, sizeof G.record, "%s/record.json", G.dir);
    snprintf(G.control, sizeof G.control, "%s/control.json", G.dir);
    snprintf(G.token, sizeof G.token, "%s/token", G.dir);
    snprintf(G.bad_token, sizeof G.bad_token, "%s/bad-token", G.dir);
    snprintf(G.empty_token, sizeof G.empty_token, "%s/empty-token", G.dir);
    if (write_text(G.token, "  s3cret-token\n") != 0 || write_text(G.bad_token, "nope\n") != 0 ||
        write_text(G.empty_token, " \n\n") != 0)
        return -1;
    char *const argv[] = {PEER_PYTHON, PEER_DIR "/fake_metacrypt.py",
                          "--dir",     G.ca_dir,
                          "--token",   "s3cret-token",
                          "--record",  G.record,
                          "--control", G.control,
                          NULL};
    if (peer_start(&G.ca, argv) != 0)
        return -1;
    snprintf(G.url, sizeof G.url, "https://127.0.0.1:%d/", G.ca.port);
    return 0;
}

static int group_teardown(void **state)
{
    peer_stop(&G.ca);
    char *const argv[] = {"rm", "-rf", G.dir, NULL};
    run_argv(argv, RUN_TIMEOUT_MS);
    return 0;
}

typedef struct ctx {
    uv_loop_t loop;
    mcp_http *http;
    char cert_dir[200];
    mcp_certs_cfg cfg;
} ctx;

static int setup(void **state)
{
    ctx *c = calloc(1, sizeof *c);
    if (!c || http_loop_init(&c->loop, &c->http) != 0)
        return -1;
    /* a fresh, not yet existing cert dir per test: the client creates it */
    snprintf(c->cert_dir, sizeof c->cert_dir, "%s/certs-%d", G.dir, ++G.seq);
    static char ca_pem[200];
    snprintf(ca_pem, sizeof ca_pem, "%s/ca.pem", G.ca_dir);
    c->cfg = (mcp_certs_cfg){
        .cert_dir = c->cert_dir, .server_url = G.url, .ca_cert = ca_pem, .token_path = G.token};
    unlink(G.control);
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    ctx *c = *state;
    int rc = http_loop_close(&c->loop, c->http);
    free(c);
    unlink(G.control);
    return rc;
}

/* ---- checks of certificates on disk --------------------------------------- */

static void test_check_valid(void **state)
{
    make_cert("valid", "a.test", "DNS:a.test,DNS:b.test", "90");
    char *p = path_in("valid.pem");
    const char *both[] = {"a.test", "B.TEST"}; /* DNS names compare case-insensitively */
    mcp_cert_info info;
    assert_int_equal(mcp_certs_check(p, both, 2, 30, &info), MCP_CERT_OK);
    time_t now = time(NULL);
    assert_true(info.not_after > now + 89 * 86400 && info.not_after < now + 91 * 86400);
    assert_string_equal(mcp_cert_status_name(MCP_CERT_OK), "ok");
    free(p);
}

static void test_check_missing_san(void **state)
{
    /* the CN names the host, the SAN does not: the CN must not count */
    make_cert("nosan", "a.test", "DNS:other.test", "90");
    make_cert("noext", "a.test", NULL, "90");
    char *p = path_in("nosan.pem"), *q = path_in("noext.pem");
    const char *want[] = {"a.test"};
    mcp_cert_info info;
    assert_int_equal(mcp_certs_check(p, want, 1, 30, &info), MCP_CERT_MISSING_SAN);
    assert_non_null(strstr(info.detail, "a.test"));
    assert_int_equal(mcp_certs_check(q, want, 1, 30, &info), MCP_CERT_MISSING_SAN);
    const char *partly[] = {"other.test", "a.test"};
    assert_int_equal(mcp_certs_check(p, partly, 2, 30, &info), MCP_CERT_MISSING_SAN);
    assert_string_equal(mcp_cert_status_name(MCP_CERT_MISSING_SAN), "missing SAN");
    free(p);
    free(q);
}

static void test_check_expiring(void **state)
{
    make_cert("soon", "a.test", "DNS:a.test", "10");
    char *p = path_in("soon.pem");
    const char *want[] = {"a.test"};
    mcp_cert_info info;
    assert_int_equal(mcp_certs_check(p, want, 1, 30, &info), MCP_CERT_EXPIRING);
    assert_non_null(strstr(info.detail, "within 30 days"));
    assert_int_equal(mcp_certs_check(p, want, 1, 5, &info), MCP_CERT_OK);
    free(p);
}

static void test_check_wildcard(void **state)
{
    make_cert("wild", "*.example.test", "DNS:*.example.test", "90");
    char *p = path_in("wild.pem");
    const char *sub[] = {"api.example.test"}, *apex[] = {"example.test"},
               *deep[] = {"a.b.example.test"};
    assert_int_equal(mcp_certs_check(p, sub, 1, 30, NULL), MCP_CERT_OK);
    assert_int_equal(mcp_certs_check(p, apex, 1, 30, NULL), MCP_CERT_MISSING_SAN);
    assert_int_equal(mcp_certs_check(p, deep, 1, 30, NULL), MCP_CERT_MISSING_SAN);
    free(p);
}

static void test_check_garbage_and_missing(void **state)
{
    char *garbage = path_in("garbage.pem"), *missing = path_in("missing.pem");
    assert_int_equal(write_text(garbage, "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n"), 0);
    const char *want[] = {"a.test"};
    mcp_cert_info info;
    assert_int_equal(mcp_certs_check(garbage, want, 1, 30, &info), MCP_CERT_UNREADABLE);
    assert_non_null(strstr(info.detail, "garbage.pem"));
    assert_int_equal(mcp_certs_check(missing, want, 1, 30, &info), MCP_CERT_MISSING);
    assert_int_equal(mcp_certs_check(G.dir, want, 1, 30, &info), MCP_CERT_UNREADABLE);
    assert_int_equal(mcp_certs_check_pem("", 0, want, 1, 30, time(NULL), &info),
                     MCP_CERT_UNREADABLE);
    /* a key is not a certificate */
    make_cert("k", "a.test", "DNS:a.test", "90");
    char *key = path_in("k.key");
    assert_int_equal(mcp_certs_check(key, want, 1, 30, &info), MCP_CERT_UNREADABLE);
    free(garbage);
    free(missing);
    free(key);
}

static char *slurp(const char *name, size_t *len)
{
    char *p = path_in(name);
    char *text = mcp_read_file(p, len);
    assert_non_null(text);
    free(p);
    return text;
}

static void test_key_matches(void **state)
{
    make_cert("m1", "a.test", "DNS:a.test", "90");
    make_cert("m2", "a.test", "DNS:a.test", "90");
    size_t cl, kl, ol;
    char *cert = slurp("m1.pem", &cl), *key = slurp("m1.key", &kl), *other = slurp("m2.key", &ol);
    mcp_error err = {{0}};
    assert_int_equal(mcp_certs_key_matches(cert, cl, key, kl, &err), 0);
    assert_int_equal(mcp_certs_key_matches(cert, cl, other, ol, &err), -1);
    assert_non_null(strstr(err.msg, "does not match"));
    assert_int_equal(mcp_certs_key_matches(cert, cl, "junk", 4, &err), -1);
    assert_non_null(strstr(err.msg, "not PEM"));
    assert_int_equal(mcp_certs_key_matches("junk", 4, key, kl, &err), -1);
    free(cert);
    free(key);
    free(other);
}

/* ---- atomic writes ------------------------------------------------------ */

/* Names in dir other than . and .. */
static int count_entries(const char *dir, const char *must_have)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    bool found = must_have == NULL;
    for (struct dirent *e; (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        n++;
        if (must_have && strcmp(e->d_name, must_have) == 0)
            found = true;
    }
    closedir(d);
    assert_true(found);
    return n;
}

static void test_write_atomic(void **state)
{
    char *dir = path_in("atomic");
    assert_int_equal(mkdir(dir, 0755), 0);
    char *p = mcp_sprintf("%s/svc.key", dir);
    mcp_error err = {{0}};
    assert_int_equal(mcp_certs_write_atomic(p, "first", 5, 0600, &err), 0);
    assert_int_equal(mcp_certs_write_atomic(p, "second\n", 7, 0600, &err), 0);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    size_t len = 0;
    char *text = mcp_read_file(p, &len);
    assert_string_equal(text, "second\n");
    free(text);
    assert_int_equal(count_entries(dir, "svc.key"), 1); /* no temporary file left */

    /* failure: the directory does not exist; nothing appears anywhere */
    char *bad = mcp_sprintf("%s/nope/svc.key", dir);
    assert_int_equal(mcp_certs_write_atomic(bad, "x", 1, 0600, &err), -1);
    assert_non_null(strstr(err.msg, "nope"));
    /* failure at rename: the target is a directory; the old content and no temp remain */
    char *sub = mcp_sprintf("%s/taken", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    assert_int_equal(mcp_certs_write_atomic(sub, "x", 1, 0644, &err), -1);
    assert_int_equal(count_entries(dir, "taken"), 2);
    free(sub);
    free(bad);
    free(p);
    free(dir);
}

/* ---- Metacrypt ---------------------------------------------------------- */

typedef struct got {
    int calls;
    mcp_certs_result res;
} got;

static void on_done(const mcp_certs_result *res, void *ud)
{
    got *g = ud;
    g->calls++;
    g->res = *res;
}

/* How many issue requests the fake recorded. */
static int requests(void)
{
    size_t len = 0;
    char *text = mcp_read_file(G.record, &len);
    assert_non_null(text);
    int n = 0;
    for (char *p = strstr(text, "\"path\":"); p; p = strstr(p + 1, "\"path\":"))
        n++;
    free(text);
    return n;
}

/* ensure(); when it starts a request, runs the loop until its callback. Returns ensure's rc. */
static int ensure(ctx *c, const char *service, const char *const *names, size_t n, got *g)
{
    mcp_certs_op *op = NULL;
    mcp_error err = {{0}};
    memset(g, 0, sizeof *g);
    int rc = mcp_certs_ensure(c->http, &c->cfg, service, names, n, on_done, g, &op, &g->res, &err);
    if (rc == -1) {
        snprintf(g->res.detail, sizeof g->res.detail, "%.500s", err.msg);
        return rc;
    }
    if (rc == 0) {
        assert_null(op);
        return rc;
    }
    assert_non_null(op);
    assert_int_equal(g->calls, 0);
    assert_true(run_until(&c->loop, &g->calls, 20000));
    for (int i = 0; i < 5; i++)
        uv_run(&c->loop, UV_RUN_NOWAIT);
    assert_int_equal(g->calls, 1);
    return rc;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static void assert_nothing_written(ctx *c)
{
    /* the cert dir is only created once an answer passed validation */
    assert_false(exists(c->cert_dir));
}

static void test_issue_and_keep(void **state)
{
    ctx *c = *state;
    const char *names[] = {"web.example.test", "www.example.test"};
    int before = requests();
    got g;
    assert_int_equal(ensure(c, "web", names, 2, &g), 1);
    assert_true(g.res.ok);
    assert_true(g.res.issued);
    assert_string_equal(g.res.reason, "");
    char *pem = mcp_sprintf("%s/web.pem", c->cert_dir),
         *key = mcp_sprintf("%s/web.key", c->cert_dir);
    assert_string_equal(g.res.cert_path, pem);
    assert_string_equal(g.res.key_path, key);
    assert_int_equal(requests(), before + 1);
    time_t now = time(NULL);
    assert_true(g.res.not_after > now + 89 * 86400); /* ttl 2160h = 90 days */

    struct stat st;
    assert_int_equal(stat(key, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(stat(pem, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600); /* SPEC §8: the pair is 0600 */
    assert_int_equal(stat(c->cert_dir, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);                 /* created by the agent */
    assert_int_equal(count_entries(c->cert_dir, "web.pem"), 2); /* .pem, .key, no temp */
    mcp_cert_info info;
    assert_int_equal(mcp_certs_check(pem, names, 2, 30, &info), MCP_CERT_OK);
    /* the file holds the certificate and then the CA chain */
    size_t len;
    char *text = mcp_read_file(pem, &len);
    char *second = strstr(strstr(text, "-----END CERTIFICATE-----") + 1, "-----BEGIN CERTIFICATE");
    assert_non_null(second);
    free(text);

    /* the request the CA saw: SPEC §8's body and the trimmed bearer token */
    text = mcp_read_file(G.record, &len);
    assert_non_null(strstr(text, "\"authorized\": true"));
    assert_non_null(strstr(text, "\"ttl\": \"2160h\""));
    assert_non_null(strstr(text, "\"issuer\": \"web\""));
    assert_non_null(strstr(text, "\"common_name\": \"web.example.test\""));
    assert_non_null(strstr(text, "\"path\": \"/v1/pki/pki/issue\""));
    free(text);

    /* valid and covering: kept, no new request */
    got again;
    assert_int_equal(ensure(c, "web", names, 2, &again), 0);
    assert_true(again.res.ok);
    assert_false(again.res.issued);
    assert_int_equal(again.res.not_after, g.res.not_after);
    assert_int_equal(requests(), before + 1);

    /* a hostname the certificate lacks: a new one */
    const char *more[] = {"web.example.test", "api.example.test"};
    got third;
    assert_int_equal(ensure(c, "web", more, 2, &third), 1);
    assert_true(third.res.ok && third.res.issued);
    assert_int_equal(requests(), before + 2);
    assert_int_equal(mcp_certs_check(pem, more, 2, 30, NULL), MCP_CERT_OK);

    /* a key that does not belong to the certificate (half-written pair): a new one */
    make_cert("stray", "x.test", "DNS:x.test", "90");
    size_t kl;
    char *stray = slurp("stray.key", &kl);
    mcp_error err = {{0}};
    assert_int_equal(mcp_certs_write_atomic(key, stray, kl, 0600, &err), 0);
    free(stray);
    got fourth;
    assert_int_equal(ensure(c, "web", more, 2, &fourth), 1);
    assert_true(fourth.res.ok && fourth.res.issued);
    assert_int_equal(requests(), before + 3);
    free(pem);
    free(key);
}

static void test_renews_when_expiring(void **state)
{
    ctx *c = *state;
    const char *names[] = {"soon.example.test"};
    assert_int_equal(write_text(G.control, "{\"ttl\": \"240h\"}"), 0); /* 10 days */
    int before = requests();
    got g;
    assert_int_equal(ensure(c, "soon", names, 1, &g), 1);
    assert_true(g.res.ok && g.res.issued); /* short, but valid: accepted */
    time_t now = time(NULL);
    assert_true(g.res.not_after < now + 11 * 86400);
    /* within 30 days of expiry: asked again */
    unlink(G.control);
    got renewed;
    assert_int_equal(ensure(c, "soon", names, 1, &renewed), 1);
    assert_true(renewed.res.ok && renewed.res.issued);
    assert_true(renewed.res.not_after > now + 89 * 86400);
    got kept;
    assert_int_equal(ensure(c, "soon", names, 1, &kept), 0);
    assert_int_equal(requests(), before + 2);
}

static void test_bad_token(void **state)
{
    ctx *c = *state;
    c->cfg.token_path = G.bad_token;
    const char *names[] = {"a.example.test"};
    got g;
    assert_int_equal(ensure(c, "svc", names, 1, &g), 1);
    assert_false(g.res.ok);
    assert_string_equal(g.res.reason, "refused");
    assert_non_null(strstr(g.res.detail, "401"));
    assert_non_null(strstr(g.res.detail, "bad token"));
    assert_nothing_written(c);
}

static void test_server_error(void **state)
{
    ctx *c = *state;
    assert_int_equal(write_text(G.control, "{\"status\": 500, \"error\": \"vault sealed\"}"), 0);
    const char *names[] = {"a.example.test"};
    got g;
    assert_int_equal(ensure(c, "svc", names, 1, &g), 1);
    assert_false(g.res.ok);
    assert_string_equal(g.res.reason, "refused");
    assert_non_null(strstr(g.res.detail, "500"));
    assert_non_null(strstr(g.res.detail, "vault sealed"));
    assert_nothing_written(c);
}

static void test_unreachable(void **state)
{
    ctx *c = *state;
    char url[64];
    snprintf(url, sizeof url, "https://127.0.0.1:%d", closed_port());
    c->cfg.server_url = url;
    const char *names[] = {"a.example.test"};
    got g;
    assert_int_equal(ensure(c, "svc", names, 1, &g), 1);
    assert_false(g.res.ok);
    assert_string_equal(g.res.reason, "unavailable");
    assert_nothing_written(c);
}

static void test_untrusted_server(void **state)
{
    ctx *c = *state;
    make_cert("otherca", "x.test", "DNS:x.test", "90");
    char *other = path_in("otherca.pem");
    c->cfg.ca_cert = other; /* not the CA that signed the server's certificate */
    const char *names[] = {"a.example.test"};
    got g;
    assert_int_equal(ensure(c, "svc", names, 1, &g), 1);
    assert_false(g.res.ok);
    assert_string_equal(g.res.reason, "unavailable");
    assert_non_null(strstr(g.res.detail, "tls"));
    assert_nothing_written(c);
    free(other);
}

static void test_timeout(void **state)
{
    ctx *c = *state;
    assert_int_equal(write_text(G.control, "{\"delay\": 3}"), 0);
    c->cfg.timeout_ms = 400;
    const char *names[] = {"a.example.test"};
    got g;
    assert_int_equal(ensure(c, "svc", names, 1, &g), 1);
    assert_false(g.res.ok);
    assert_string_equal(g.res.reason, "timeout");
    assert_nothing_written(c);
}

/* Each answer that must be refused before anything is written. */
static void refused_answer(ctx *c, const char *control, const char *detail_part)
{
    assert_int_equal(write_text(G.control, control), 0);
    const char *names[] = {"a.example.test", "b.example.test"};
    got g;
    assert_int_equal(ensure(c, "svc", names, 2, &g), 1);
    assert_false(g.res.ok);
    assert_string_equal(g.res.reason, "bad response");
    if (!strstr(g.res.detail, detail_part))
        fail_msg("detail \"%s\" lacks \"%s\"", g.res.detail, detail_part);
    assert_nothing_written(c);
}

static void test_cert_missing_hostname_refused(void **state)
{
    refused_answer(*state, "{\"drop_hostname\": true}", "b.example.test");
}

static void test_wrong_key_refused(void **state)
{
    refused_answer(*state, "{\"wrong_key\": true}", "does not match");
}

static void test_not_json_refused(void **state)
{
    refused_answer(*state, "{\"garbage\": true}", "not a JSON object");
}

static void test_cancel(void **state)
{
    ctx *c = *state;
    assert_int_equal(write_text(G.control, "{\"delay\": 1}"), 0);
    const char *names[] = {"a.example.test"};
    mcp_certs_op *op = NULL;
    mcp_certs_result now;
    mcp_error err = {{0}};
    got g = {0};
    assert_int_equal(
        mcp_certs_ensure(c->http, &c->cfg, "svc", names, 1, on_done, &g, &op, &now, &err), 1);
    mcp_certs_cancel(op);
    assert_int_equal(g.calls, 0);
    assert_true(run_until(&c->loop, &g.calls, 5000));
    assert_true(g.res.cancelled);
    assert_false(g.res.ok);
    assert_string_equal(g.res.reason, "cancelled");
    assert_nothing_written(c);
    sleep(1);
}

static void test_bad_arguments(void **state)
{
    ctx *c = *state;
    const char *names[] = {"a.example.test"};
    const char *bad_host[] = {"a.example.test/../x"};
    got g;
    assert_int_equal(ensure(c, "../etc", names, 1, &g), -1);
    assert_non_null(strstr(g.res.detail, "bad service name"));
    assert_int_equal(ensure(c, "Svc", names, 1, &g), -1);
    assert_int_equal(ensure(c, "svc", names, 0, &g), -1);
    assert_non_null(strstr(g.res.detail, "no hostnames"));
    assert_int_equal(ensure(c, "svc", bad_host, 1, &g), -1);
    assert_non_null(strstr(g.res.detail, "bad hostname"));
    c->cfg.token_path = G.empty_token;
    assert_int_equal(ensure(c, "svc", names, 1, &g), -1);
    assert_non_null(strstr(g.res.detail, "empty-token"));
    char *missing = path_in("no-token");
    c->cfg.token_path = missing;
    assert_int_equal(ensure(c, "svc", names, 1, &g), -1);
    assert_non_null(strstr(g.res.detail, "no-token"));
    free(missing);
    c->cfg.token_path = G.token;
    c->cfg.server_url = NULL;
    assert_int_equal(ensure(c, "svc", names, 1, &g), -1);
    assert_non_null(strstr(g.res.detail, "server_url"));
    c->cfg.cert_dir = NULL;
    assert_int_equal(ensure(c, "svc", names, 1, &g), -1);
    assert_non_null(strstr(g.res.detail, "cert_dir"));
    assert_int_equal(g.calls, 0);
    assert_nothing_written(c);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_check_valid),
        T(test_check_missing_san),
        T(test_check_expiring),
        T(test_check_wildcard),
        T(test_check_garbage_and_missing),
        T(test_key_matches),
        T(test_write_atomic),
        T(test_issue_and_keep),
        T(test_renews_when_expiring),
        T(test_bad_token),
        T(test_server_error),
        T(test_unreachable),
        T(test_untrusted_server),
        T(test_timeout),
        T(test_cert_missing_hostname_refused),
        T(test_wrong_key_refused),
        T(test_not_json_refused),
        T(test_cancel),
        T(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
