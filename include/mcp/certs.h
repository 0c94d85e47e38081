/* TLS certificates for L7 routes (SPEC §8): checking the certificate a
 * service has on disk, and getting a new one from Metacrypt over HTTPS
 * (docs/CERTIFICATES.md). Files: <cert_dir>/<service>.pem (certificate then
 * CA chain, 0644) and <cert_dir>/<service>.key (0600), written atomically. */
#ifndef MCP_CERTS_H
#define MCP_CERTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "mcp/error.h"
#include "mcp/http.h"

/* A certificate is renewed when it expires within this many days. */
#define MCP_CERTS_RENEW_DAYS 30
#define MCP_CERTS_DEFAULT_TTL "2160h"
#define MCP_CERTS_DEFAULT_TIMEOUT_MS 15000

typedef enum mcp_cert_status {
    MCP_CERT_OK = 0,
    MCP_CERT_MISSING,     /* no such file */
    MCP_CERT_UNREADABLE,  /* cannot be read, or is not a PEM certificate */
    MCP_CERT_EXPIRING,    /* expired, or expires within min_valid_days */
    MCP_CERT_MISSING_SAN, /* a hostname is not among its SAN dNSName entries */
} mcp_cert_status;

typedef struct mcp_cert_info {
    mcp_cert_status status;
    time_t not_after; /* when readable; 0 otherwise */
    char detail[256]; /* why, when not OK: the file error, the missing hostname, the date */
} mcp_cert_info;

/* A short stable name for status: "ok", "missing", "unreadable", "expiring", "missing SAN". */
const char *mcp_cert_status_name(mcp_cert_status status);

/* Checks the first certificate of the PEM file cert_path: it must parse,
 * cover every hostname through its SAN dNSName entries (wildcards as in
 * RFC 6125; the subject CN does not count), and stay valid for at least
 * min_valid_days from now. Fills info (may be NULL) and returns its status. */
mcp_cert_status mcp_certs_check(const char *cert_path, const char *const *hostnames,
                                size_t n_hostnames, int min_valid_days, mcp_cert_info *info);

/* The same check on PEM text in memory, at time `now`. */
mcp_cert_status mcp_certs_check_pem(const char *pem, size_t len, const char *const *hostnames,
                                    size_t n_hostnames, int min_valid_days, time_t now,
                                    mcp_cert_info *info);

/* Whether the private key in key_pem belongs to the first certificate of
 * cert_pem. Returns 0 when it does, -1 with err set otherwise (either does
 * not parse, or they do not match). */
int mcp_certs_key_matches(const char *cert_pem, size_t cert_len, const char *key_pem,
                          size_t key_len, mcp_error *err);

/* Writes data to path atomically with the given mode: a temporary file in
 * the same directory, fsync, rename over path, fsync of the directory. On
 * failure path is untouched and no temporary file is left. Returns 0 or -1
 * with err set. */
int mcp_certs_write_atomic(const char *path, const void *data, size_t len, unsigned mode,
                           mcp_error *err);

/* Where to get certificates and where to keep them ([mcproxy] cert_dir and
 * [metacrypt] of the config). Copied by the calls: need not outlive them. */
typedef struct mcp_certs_cfg {
    const char *cert_dir;
    const char *server_url; /* https://host:port (a trailing '/' is allowed) */
    const char *ca_cert;    /* trust these CAs for server_url; NULL: the system store */
    const char *mount;      /* NULL: "pki" */
    const char *issuer;     /* NULL: "web" */
    const char *token_path; /* the bearer token (surrounding whitespace trimmed) */
    const char *ttl;        /* NULL: MCP_CERTS_DEFAULT_TTL */
    int64_t timeout_ms;     /* <= 0: MCP_CERTS_DEFAULT_TIMEOUT_MS */
} mcp_certs_cfg;

#define MCP_CERTS_PATH_MAX 1024

typedef struct mcp_certs_result {
    bool ok;
    bool cancelled;
    bool issued; /* a new certificate was written (false: the one on disk was kept) */
    /* "" when ok; else short and stable: "unavailable" (Metacrypt unreachable),
     * "timeout", "refused" (Metacrypt answered an error status), "bad response"
     * (not the JSON, certificate or key we need: nothing written), "write
     * failed", "cancelled" */
    const char *reason;
    char detail[512];                   /* more about the failure, "" when none */
    char cert_path[MCP_CERTS_PATH_MAX]; /* <cert_dir>/<service>.pem */
    char key_path[MCP_CERTS_PATH_MAX];  /* <cert_dir>/<service>.key */
    time_t not_after;                   /* expiry of the certificate now on disk (ok only) */
} mcp_certs_result;

typedef struct mcp_certs_op mcp_certs_op;

/* Called exactly once per started request, from the loop; res is freed after. */
typedef void (*mcp_certs_cb)(const mcp_certs_result *res, void *ud);

/* Makes sure <cert_dir>/<service>.pem + .key cover hostnames for at least
 * MCP_CERTS_RENEW_DAYS more days and match each other. When they do:
 * returns 0 with *now filled (ok, issued = false) and never calls cb.
 * Otherwise asks Metacrypt for a new certificate and returns 1 with *op
 * set: cb runs once with the outcome. The answer is validated (JSON shape,
 * the certificate parses, is not expired and covers every hostname, the key
 * matches) before anything is written. Returns -1 with err set on bad
 * arguments or configuration (bad service name or hostname, no hostnames,
 * no cert_dir / server_url / token, unreadable or empty token file, path
 * too long): cb is never called. */
int mcp_certs_ensure(mcp_http *http, const mcp_certs_cfg *cfg, const char *service,
                     const char *const *hostnames, size_t n_hostnames, mcp_certs_cb cb, void *ud,
                     mcp_certs_op **op, mcp_certs_result *now, mcp_error *err);

/* Requests a new certificate whatever the one on disk is: 1 with *op set
 * (cb runs once), or -1 with err set as for mcp_certs_ensure. */
int mcp_certs_issue(mcp_http *http, const mcp_certs_cfg *cfg, const char *service,
                    const char *const *hostnames, size_t n_hostnames, mcp_certs_cb cb, void *ud,
                    mcp_certs_op **op, mcp_error *err);

/* Stops the request: cb runs once on a later loop turn with cancelled = true
 * and nothing is written. Valid until cb has run. */
void mcp_certs_cancel(mcp_certs_op *op);

#endif
