/* TLS certificates: checks with OpenSSL, atomic files, and the Metacrypt
 * issue exchange (docs/CERTIFICATES.md) on the mcp_http client. */
#include "mcp/certs.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "mcp/log.h"
#include "mcp/util.h"

/* A certificate bundle or key larger than this is not one. */
#define MAX_PEM ((size_t)1 << 20)
#define MAX_TOKEN 8192

const char *mcp_cert_status_name(mcp_cert_status status)
{
    switch (status) {
    case MCP_CERT_OK:
        return "ok";
    case MCP_CERT_MISSING:
        return "missing";
    case MCP_CERT_UNREADABLE:
        return "unreadable";
    case MCP_CERT_EXPIRING:
        return "expiring";
    case MCP_CERT_MISSING_SAN:
        return "missing SAN";
    }
    return "unknown";
}

/* ---- checks ------------------------------------------------------------- */

static mcp_cert_status set_info(mcp_cert_info *info, mcp_cert_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static mcp_cert_status set_info(mcp_cert_info *info, mcp_cert_status status, const char *fmt, ...)
{
    if (info) {
        info->status = status;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(info->detail, sizeof info->detail, fmt, ap);
        va_end(ap);
    }
    return status;
}

/* The first certificate of a PEM buffer, or NULL. */
static X509 *parse_cert(const char *pem, size_t len)
{
    if (!pem || len == 0 || len > MAX_PEM)
        return NULL;
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (!bio)
        return NULL;
    X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    BIO_free(bio);
    ERR_clear_error(); /* a parse failure is an answer, not a pending error */
    return x;
}

static int cert_not_after(const X509 *x, time_t *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const ASN1_TIME *t = X509_get0_notAfter(x);
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
        return -1;
    *out = timegm(&tm);
    return 0;
}

static void format_time(time_t t, char *buf, size_t size)
{
    struct tm tm;
    if (!gmtime_r(&t, &tm) || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, size, "%lld", (long long)t);
}

mcp_cert_status mcp_certs_check_pem(const char *pem, size_t len, const char *const *hostnames,
                                    size_t n_hostnames, int min_valid_days, time_t now,
                                    mcp_cert_info *info)
{
    if (info)
        memset(info, 0, sizeof *info);
    X509 *x = parse_cert(pem, len);
    if (!x)
        return set_info(info, MCP_CERT_UNREADABLE, "not a PEM certificate");
    time_t not_after = 0;
    if (cert_not_after(x, &not_after) != 0) {
        X509_free(x);
        return set_info(info, MCP_CERT_UNREADABLE, "the certificate has no readable notAfter");
    }
    if (info)
        info->not_after = not_after;
    mcp_cert_status st = MCP_CERT_OK;
    for (size_t i = 0; i < n_hostnames && st == MCP_CERT_OK; i++) {
        const char *h = hostnames[i] ? hostnames[i] : "";
        /* SAN dNSName only: a CN that merely looks like the host does not count */
        if (X509_check_host(x, h, strlen(h), X509_CHECK_FLAG_NEVER_CHECK_SUBJECT, NULL) != 1)
            st = set_info(info, MCP_CERT_MISSING_SAN, "no SAN dNSName covers %s", h);
    }
    X509_free(x);
    if (st != MCP_CERT_OK)
        return st;
    char when[40];
    format_time(not_after, when, sizeof when);
    if (not_after <= now)
        return set_info(info, MCP_CERT_EXPIRING, "expired at %s", when);
    if (not_after - now < (time_t)min_valid_days * 86400)
        return set_info(info, MCP_CERT_EXPIRING, "expires at %s, within %d days", when,
                        min_valid_days);
    return set_info(info, MCP_CERT_OK, "valid until %s", when);
}

mcp_cert_status mcp_certs_check(const char *cert_path, const char *const *hostnames,
                                size_t n_hostnames, int min_valid_days, mcp_cert_info *info)
{
    if (info)
        memset(info, 0, sizeof *info);
    size_t len = 0;
    char *pem = mcp_read_file(cert_path, &len);
    if (!pem) {
        int e = errno;
        return set_info(info, e == ENOENT ? MCP_CERT_MISSING : MCP_CERT_UNREADABLE, "%s: %s",
                        cert_path, strerror(e));
    }
    mcp_cert_status st =
        mcp_certs_check_pem(pem, len, hostnames, n_hostnames, min_valid_days, time(NULL), info);
    free(pem);
    if (st != MCP_CERT_OK && info) {
        char detail[sizeof info->detail];
        snprintf(detail, sizeof detail, "%.120s: %.120s", cert_path, info->detail);
        memcpy(info->detail, detail, sizeof detail);
    }
    return st;
}

int mcp_certs_key_matches(const char *cert_pem, size_t cert_len, const char *key_pem,
                          size_t key_len, mcp_error *err)
{
    X509 *x = parse_cert(cert_pem, cert_len);
    if (!x) {
        mcp_error_set(err, "the certificate is not PEM");
        return -1;
    }
    EVP_PKEY *key = NULL;
    if (key_pem && key_len > 0 && key_len <= MAX_PEM) {
        BIO *bio = BIO_new_mem_buf(key_pem, (int)key_len);
        if (bio) {
            key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
            BIO_free(bio);
        }
    }
    int rc = -1;
    if (!key)
        mcp_error_set(err, "the private key is not PEM");
    else if (X509_check_private_key(x, key) != 1)
        mcp_error_set(err, "the private key does not match the certificate");
    else
        rc = 0;
    ERR_clear_error();
    EVP_PKEY_free(key);
    X509_free(x);
    return rc;
}

/* ---- files -------------------------------------------------------------- */

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int mcp_certs_write_atomic(const char *path, const void *data, size_t len, unsigned mode,
                           mcp_error *err)
{
    const char *slash = strrchr(path, '/');
    char *dir =
        slash ? mcp_strndup(path, slash == path ? 1 : (size_t)(slash - path)) : mcp_strdup(".");
    char *tmp = mcp_sprintf("%s/.%s.tmp.XXXXXX", dir ? dir : ".", slash ? slash + 1 : path);
    if (!dir || !tmp) {
        free(dir);
        free(tmp);
        mcp_error_set(err, "%s: out of memory", path);
        return -1;
    }
    int rc = -1;
    int fd = mkstemp(tmp);
    if (fd < 0) {
        mcp_error_set(err, "%s: cannot create a temporary file: %s", tmp, strerror(errno));
        goto out;
    }
    /* mode first: the key must never exist with looser permissions */
    if (fchmod(fd, (mode_t)mode) != 0 || write_all(fd, data, len) != 0 || fsync(fd) != 0) {
        mcp_error_set(err, "%s: cannot write: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        goto out;
    }
    if (close(fd) != 0) {
        mcp_error_set(err, "%s: cannot write: %s", tmp, strerror(errno));
        unlink(tmp);
        goto out;
    }
    if (rename(tmp, path) != 0) {
        mcp_error_set(err, "%s: cannot rename into place: %s", path, strerror(errno));
        unlink(tmp);
        goto out;
    }
    if (fsync_dir(dir) != 0) {
        mcp_error_set(err, "%s: cannot sync the directory: %s", dir, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    free(dir);
    free(tmp);
    return rc;
}

/* ---- the Metacrypt exchange ---------------------------------------------- */

struct mcp_certs_op {
    mcp_http_req *req;
    mcp_certs_cb cb;
    void *ud;
    char *cert_dir;
    mcp_strv hostnames;
    mcp_certs_result res; /* paths filled at start */
};

/* Service names become file names: the §4 rule keeps them safe. */
static bool valid_service(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 63 || !(islower((unsigned char)s[0]) || isdigit((unsigned char)s[0])))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '-'))
            return false;
    return true;
}

static bool valid_hostname(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 253)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '.' || s[i] == '-' || s[i] == '*'))
            return false;
    return true;
}

static int check_args(const mcp_certs_cfg *cfg, const char *service, const char *const *hostnames,
                      size_t n, mcp_error *err)
{
    if (!cfg || !cfg->cert_dir || !cfg->cert_dir[0]) {
        mcp_error_set(err, "certs: no certificate directory configured ([mcproxy] cert_dir)");
        return -1;
    }
    if (!valid_service(service)) {
        mcp_error_set(err, "certs: bad service name \"%s\"", service ? service : "(null)");
        return -1;
    }
    if (n == 0 || !hostnames) {
        mcp_error_set(err, "certs: no hostnames for service %s", service);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (!valid_hostname(hostnames[i])) {
            mcp_error_set(err, "certs: bad hostname \"%s\" for service %s",
                          hostnames[i] ? hostnames[i] : "(null)", service);
            return -1;
        }
    }
    return 0;
}

static int fill_paths(mcp_certs_result *res, const char *cert_dir, const char *service,
                      mcp_error *err)
{
    int a = snprintf(res->cert_path, sizeof res->cert_path, "%s/%s.pem", cert_dir, service);
    int b = snprintf(res->key_path, sizeof res->key_path, "%s/%s.key", cert_dir, service);
    if (a < 0 || b < 0 || (size_t)a >= sizeof res->cert_path || (size_t)b >= sizeof res->key_path) {
        mcp_error_set(err, "certs: path of %s in %s is too long", service, cert_dir);
        return -1;
    }
    return 0;
}

/* Reads the bearer token: trimmed, non-empty, one line of printable text. */
static char *read_token(const char *path, mcp_error *err)
{
    if (!path || !path[0]) {
        mcp_error_set(err, "certs: no token file configured ([metacrypt] token_path)");
        return NULL;
    }
    size_t len = 0;
    char *tok = mcp_read_file(path, &len);
    if (!tok) {
        mcp_error_set(err, "%s: cannot read the Metacrypt token: %s", path, strerror(errno));
        return NULL;
    }
    size_t start = 0;
    while (start < len && isspace((unsigned char)tok[start]))
        start++;
    while (len > start && isspace((unsigned char)tok[len - 1]))
        len--;
    memmove(tok, tok + start, len - start);
    tok[len - start] = '\0';
    bool ok = tok[0] != '\0' && len - start <= MAX_TOKEN;
    for (size_t i = 0; ok && tok[i]; i++)
        ok = isprint((unsigned char)tok[i]) != 0;
    if (!ok) {
        mcp_error_set(err, "%s: the Metacrypt token is empty, too long or not one line of text",
                      path);
        free(tok);
        return NULL;
    }
    return tok;
}

static char *issue_url(const mcp_certs_cfg *cfg)
{
    size_t n = strlen(cfg->server_url);
    while (n > 0 && cfg->server_url[n - 1] == '/')
        n--;
    return mcp_sprintf("%.*s/v1/pki/%s/issue", (int)n, cfg->server_url,
                       cfg->mount && cfg->mount[0] ? cfg->mount : "pki");
}

static char *issue_body(const mcp_certs_cfg *cfg, const char *const *hostnames, size_t n)
{
    json_t *names = json_array();
    json_t *body = json_object();
    char *text = NULL;
    bool ok = names && body;
    for (size_t i = 0; ok && i < n; i++)
        ok = json_array_append_new(names, json_string(hostnames[i])) == 0;
    if (ok &&
        json_object_set_new(body, "issuer",
                            json_string(cfg->issuer && cfg->issuer[0] ? cfg->issuer : "web")) ==
            0 &&
        json_object_set_new(body, "common_name", json_string(hostnames[0])) == 0 &&
        json_object_set(body, "dns_names", names) == 0 &&
        json_object_set_new(
            body, "ttl", json_string(cfg->ttl && cfg->ttl[0] ? cfg->ttl : MCP_CERTS_DEFAULT_TTL)) ==
            0)
        text = json_dumps(body, JSON_COMPACT);
    json_decref(names);
    json_decref(body);
    return text;
}

static void op_free(mcp_certs_op *op)
{
    free(op->cert_dir);
    mcp_strv_free(&op->hostnames);
    free(op);
}

static void op_fail(mcp_certs_op *op, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void op_fail(mcp_certs_op *op, const char *reason, const char *fmt, ...)
{
    op->res.ok = false;
    op->res.reason = reason;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(op->res.detail, sizeof op->res.detail, fmt, ap);
    va_end(ap);
}

/* The error text of a non-200 answer: {"error": …}, else the start of the body. */
static void refused_detail(mcp_certs_op *op, const mcp_http_response *hr)
{
    json_t *j = json_loadb(hr->body, hr->body_len, 0, NULL);
    const char *msg = json_is_object(j) ? json_string_value(json_object_get(j, "error")) : NULL;
    if (msg)
        op_fail(op, "refused", "metacrypt answered HTTP %ld: %.400s", hr->status, msg);
    else
        op_fail(op, "refused", "metacrypt answered HTTP %ld", hr->status);
    json_decref(j);
}

static const char *json_field(json_t *obj, const char *key, bool required, bool *bad)
{
    json_t *v = json_object_get(obj, key);
    if (!v) {
        if (required)
            *bad = true;
        return "";
    }
    if (!json_is_string(v) || (required && json_string_length(v) == 0)) {
        *bad = true;
        return "";
    }
    return json_string_value(v);
}

/* The certificate file: the certificate, then the CA chain. */
static char *bundle(const char *cert, const char *chain)
{
    size_t n = strlen(cert);
    bool nl = n > 0 && cert[n - 1] != '\n';
    return mcp_sprintf("%s%s%s", cert, nl ? "\n" : "", chain);
}

/* Validates the answer and writes the files: key first, so that a
 * certificate is never on disk without its key. */
static void accept_answer(mcp_certs_op *op, const mcp_http_response *hr)
{
    json_error_t jerr;
    json_t *j = json_loadb(hr->body, hr->body_len, 0, &jerr);
    if (!json_is_object(j)) {
        op_fail(op, "bad response", "metacrypt's answer is not a JSON object: %s",
                j ? "wrong type" : jerr.text);
        json_decref(j);
        return;
    }
    bool bad = false;
    const char *cert = json_field(j, "certificate", true, &bad);
    const char *key = json_field(j, "private_key", true, &bad);
    const char *chain = json_field(j, "ca_chain", false, &bad);
    if (bad) {
        op_fail(op, "bad response",
                "metacrypt's answer lacks certificate/private_key strings "
                "(or ca_chain is not a string)");
        json_decref(j);
        return;
    }
    mcp_cert_info info;
    mcp_error err = {{0}};
    mcp_cert_status st =
        mcp_certs_check_pem(cert, strlen(cert), (const char *const *)op->hostnames.v,
                            op->hostnames.n, 0, time(NULL), &info);
    if (st != MCP_CERT_OK) {
        op_fail(op, "bad response", "the issued certificate is %s: %s", mcp_cert_status_name(st),
                info.detail);
    } else if (mcp_certs_key_matches(cert, strlen(cert), key, strlen(key), &err) != 0) {
        op_fail(op, "bad response", "issued: %s", err.msg);
    } else {
        char *pem = bundle(cert, chain);
        if (!pem) {
            op_fail(op, "write failed", "out of memory");
        } else if (mkdir(op->cert_dir, 0700) != 0 && errno != EEXIST) { /* SPEC §8: 0600 pair */
            op_fail(op, "write failed", "%s: cannot create: %s", op->cert_dir, strerror(errno));
        } else if (mcp_certs_write_atomic(op->res.key_path, key, strlen(key), 0600, &err) != 0 ||
                   mcp_certs_write_atomic(op->res.cert_path, pem, strlen(pem), 0600, &err) != 0) {
            op_fail(op, "write failed", "%s", err.msg);
        } else {
            op->res.ok = true;
            op->res.issued = true;
            op->res.reason = "";
            op->res.not_after = info.not_after;
        }
        free(pem);
    }
    json_decref(j);
}

static void on_issue_done(const mcp_http_response *hr, void *ud)
{
    mcp_certs_op *op = ud;
    if (hr->cancelled) {
        op->res.cancelled = true;
        op_fail(op, "cancelled", "%s", "");
    } else if (hr->timed_out) {
        op_fail(op, "timeout", "metacrypt did not answer in time");
    } else if (hr->reason[0]) {
        op_fail(op, "unavailable", "%s", hr->reason);
    } else if (hr->status != 200) {
        refused_detail(op, hr);
    } else {
        accept_answer(op, hr);
    }
    if (op->res.ok)
        mcp_log(MCP_LOG_INFO, "certificate issued", "cert", op->res.cert_path, "hostnames",
                op->hostnames.v[0], NULL);
    op->cb(&op->res, op->ud);
    op_free(op);
}

int mcp_certs_issue(mcp_http *http, const mcp_certs_cfg *cfg, const char *service,
                    const char *const *hostnames, size_t n_hostnames, mcp_certs_cb cb, void *ud,
                    mcp_certs_op **out, mcp_error *err)
{
    *out = NULL;
    if (!http || !cb) {
        mcp_error_set(err, "certs: a request needs a client and a callback");
        return -1;
    }
    if (check_args(cfg, service, hostnames, n_hostnames, err) != 0)
        return -1;
    if (!cfg->server_url || !cfg->server_url[0]) {
        mcp_error_set(err, "certs: no Metacrypt configured ([metacrypt] server_url)");
        return -1;
    }
    mcp_certs_op *op = calloc(1, sizeof *op);
    if (!op) {
        mcp_error_set(err, "certs: out of memory");
        return -1;
    }
    if (fill_paths(&op->res, cfg->cert_dir, service, err) != 0) {
        free(op);
        return -1;
    }
    char *token = read_token(cfg->token_path, err);
    if (!token) {
        free(op);
        return -1;
    }
    char *auth = mcp_sprintf("Authorization: Bearer %s", token);
    char *url = issue_url(cfg);
    char *body = issue_body(cfg, hostnames, n_hostnames);
    op->cert_dir = mcp_strdup(cfg->cert_dir);
    bool ok = auth && url && body && op->cert_dir;
    for (size_t i = 0; ok && i < n_hostnames; i++)
        ok = mcp_strv_push(&op->hostnames, hostnames[i]) == 0;
    int rc = -1;
    if (!ok) {
        mcp_error_set(err, "certs: out of memory");
    } else {
        op->cb = cb;
        op->ud = ud;
        op->res.reason = "";
        const char *headers[] = {auth, "Content-Type: application/json", "Accept: application/json",
                                 NULL};
        mcp_http_request rq = {
            .method = "POST",
            .url = url,
            .headers = headers,
            .body = body,
            .body_len = strlen(body),
            .ca_file = cfg->ca_cert && cfg->ca_cert[0] ? cfg->ca_cert : NULL,
            .timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : MCP_CERTS_DEFAULT_TIMEOUT_MS,
            .max_response = MAX_PEM,
        };
        op->req = mcp_http_start(http, &rq, on_issue_done, op, err);
        if (op->req) {
            *out = op;
            rc = 1;
        } else {
            mcp_error_prefix(err, "certs");
        }
    }
    if (rc != 1)
        op_free(op);
    /* the token was copied by mcp_http_start; do not leave it in freed memory */
    explicit_bzero(token, strlen(token));
    if (auth)
        explicit_bzero(auth, strlen(auth));
    free(token);
    free(auth);
    free(url);
    free(body);
    return rc;
}

/* Whether the key on disk belongs to the certificate on disk. */
static bool key_on_disk_matches(const mcp_certs_result *res, char *why, size_t whylen)
{
    size_t clen = 0, klen = 0;
    char *cert = mcp_read_file(res->cert_path, &clen);
    char *key = cert ? mcp_read_file(res->key_path, &klen) : NULL;
    mcp_error err = {{0}};
    bool ok = false;
    if (!key)
        snprintf(why, whylen, "%.200s: %.100s", res->key_path, strerror(errno));
    else if (mcp_certs_key_matches(cert, clen, key, klen, &err) != 0)
        snprintf(why, whylen, "%.200s: %.100s", res->key_path, err.msg);
    else
        ok = true;
    if (key)
        explicit_bzero(key, klen);
    free(cert);
    free(key);
    return ok;
}

int mcp_certs_ensure(mcp_http *http, const mcp_certs_cfg *cfg, const char *service,
                     const char *const *hostnames, size_t n_hostnames, mcp_certs_cb cb, void *ud,
                     mcp_certs_op **op, mcp_certs_result *now, mcp_error *err)
{
    *op = NULL;
    memset(now, 0, sizeof *now);
    now->reason = "";
    if (check_args(cfg, service, hostnames, n_hostnames, err) != 0 ||
        fill_paths(now, cfg->cert_dir, service, err) != 0)
        return -1;
    mcp_cert_info info;
    mcp_cert_status st =
        mcp_certs_check(now->cert_path, hostnames, n_hostnames, MCP_CERTS_RENEW_DAYS, &info);
    char why[sizeof info.detail + 64];
    if (st == MCP_CERT_OK && key_on_disk_matches(now, why, sizeof why)) {
        now->ok = true;
        now->not_after = info.not_after;
        return 0;
    }
    if (st != MCP_CERT_OK)
        snprintf(why, sizeof why, "%s (%s)", mcp_cert_status_name(st), info.detail);
    int rc = mcp_certs_issue(http, cfg, service, hostnames, n_hostnames, cb, ud, op, err);
    if (rc == 1)
        mcp_log(MCP_LOG_INFO, "requesting a certificate from metacrypt", "service", service, "why",
                why, NULL);
    return rc;
}

void mcp_certs_cancel(mcp_certs_op *op)
{
    if (op)
        mcp_http_cancel(op->req);
}
