/* An async HTTP(S) / HTTP/2 client on the event loop: libcurl's multi
 * interface driven by uv_poll and uv_timer. One client per loop; every
 * request has a timeout, can be cancelled, and calls back exactly once.
 * Redirects are not followed. Because of curl 7.88's cleartext HTTP/2 bug
 * (WIRE.md) the client never multiplexes (CURLPIPE_NOTHING) and cleartext
 * HTTP/2 requests never reuse a connection (one connection per request);
 * HTTP/1.1 and TLS connections are still reused one request at a time. */
#ifndef MCP_HTTP_H
#define MCP_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "mcp/error.h"

#define MCP_HTTP_DEFAULT_TIMEOUT_MS 30000
#define MCP_HTTP_DEFAULT_MAX_RESPONSE ((size_t)16 << 20)

typedef enum mcp_http_version {
    MCP_HTTP_ANY = 0, /* curl decides (HTTP/1.1 on cleartext, ALPN on TLS) */
    MCP_HTTP_1_1,     /* HTTP/1.1 only */
    MCP_HTTP_2,       /* HTTP/2 required: prior knowledge on http://, ALPN on https://;
                         a server that does not speak it fails the request */
} mcp_http_version;

/* Streaming: receives the body bytes of a request as they arrive (status: the
 * HTTP status of the response they belong to). Called on the loop but from
 * inside curl: it must not start, cancel or destroy requests. Returning false
 * aborts the transfer (its callback then has reason "aborted"). */
typedef bool (*mcp_http_data_cb)(const void *data, size_t len, long status, void *ud);

/* What to send. Strings and the body are copied: they need not outlive the call. */
typedef struct mcp_http_request {
    const char *method;         /* NULL: "GET", or "POST" when body_len > 0 */
    const char *url;            /* http:// or https:// */
    const char *const *headers; /* "Name: value" strings, NULL-terminated; may be NULL */
    const void *body;           /* binary-safe */
    size_t body_len;
    const char *unix_socket; /* connect to this path instead (URL host is then only the
                                Host header, e.g. http://localhost/...); NULL: TCP */
    mcp_http_version version;
    const char *ca_file;              /* TLS: trust these CAs instead of the system store */
    const char *cert_file, *key_file; /* TLS client certificate and key (PEM) */
    int64_t timeout_ms;               /* whole request; <= 0: MCP_HTTP_DEFAULT_TIMEOUT_MS */
    int64_t connect_timeout_ms;       /* <= 0: same as timeout_ms */
    size_t max_response;              /* body cap; 0: MCP_HTTP_DEFAULT_MAX_RESPONSE */
    /* A long-lived response (e.g. a gRPC server stream): with on_data set the
     * body goes to it instead of into res->body, and max_response does not
     * apply (on_data bounds what it keeps). */
    mcp_http_data_cb on_data;
    void *data_ud;
    bool no_deadline; /* no limit on the whole request: only connect_timeout_ms (or
                         timeout_ms when unset) bounds the connection set-up; the
                         caller bounds the rest (and cancels) */
} mcp_http_request;

/* One response header or trailer, in arrival order. */
typedef struct mcp_http_header {
    char *name;
    char *value;  /* surrounding whitespace trimmed */
    bool trailer; /* arrived after the blank line that ends the headers */
} mcp_http_header;

typedef struct mcp_http_response {
    bool cancelled;     /* mcp_http_cancel or mcp_http_destroy ended it */
    bool timed_out;     /* the timeout (or connect timeout) fired */
    bool too_large;     /* the body passed max_response */
    int curl_code;      /* CURLcode; 0 when the transfer completed */
    const char *error;  /* "" when ok, else curl's error text or ours */
    const char *reason; /* short and stable, "" when the transfer completed (whatever
                           the HTTP status): "timeout", "refused", "reset", "too large",
                           "cancelled", "dns", "tls: <text>", "http2 error: <text>",
                           "not http/2", "aborted" (on_data said stop), else curl's text */
    long status;        /* HTTP status; 0 when no response arrived */
    int http_version;   /* 1 or 2 (major version used), 0 when unknown */
    char *body;         /* NUL-terminated (the NUL is not counted in body_len) */
    size_t body_len;
    mcp_http_header *headers; /* headers and trailers of the final response */
    size_t n_headers;
    double elapsed_s;
} mcp_http_response;

typedef struct mcp_http mcp_http;         /* the client: one per loop */
typedef struct mcp_http_req mcp_http_req; /* a request in flight */

/* Called exactly once per started request, always from the loop (never from
 * inside mcp_http_start, mcp_http_cancel or mcp_http_destroy). res and its
 * buffers are freed after it returns; the mcp_http_req is invalid then too. */
typedef void (*mcp_http_cb)(const mcp_http_response *res, void *ud);

/* Creates a client on loop. NULL with err set when curl cannot be set up. */
mcp_http *mcp_http_new(uv_loop_t *loop, mcp_error *err);

/* Cancels every request in flight (their callbacks still run once, with
 * cancelled = true, on the next loop turn) and closes every uv handle. Memory
 * is released once the loop has run the close callbacks: keep running the
 * loop (uv_run) before uv_loop_close. New requests are refused from now on. */
void mcp_http_destroy(mcp_http *c);

/* Starts a request. Returns its handle, or NULL with err set (bad URL or
 * options, out of memory, client being destroyed): cb is then never called. */
mcp_http_req *mcp_http_start(mcp_http *c, const mcp_http_request *rq, mcp_http_cb cb, void *ud,
                             mcp_error *err);

/* Stops the request; cb runs once on the next loop turn with cancelled = true
 * (unless the request had already finished and only its callback was
 * pending). Valid from the moment the handle is returned until cb runs. */
void mcp_http_cancel(mcp_http_req *r);

/* The value of the first header (where = MCP_HTTP_IN_HEADERS), trailer
 * (MCP_HTTP_IN_TRAILERS) or either (MCP_HTTP_IN_ANY) named name, compared
 * case-insensitively; NULL when there is none. */
enum { MCP_HTTP_IN_ANY = 0, MCP_HTTP_IN_HEADERS = 1, MCP_HTTP_IN_TRAILERS = 2 };
const char *mcp_http_find_header(const mcp_http_response *res, const char *name, int where);

#endif
