/* The HTTP client: one CURLM per client, driven by libuv ("multi-uv"):
 * curl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION → uv_poll)
 * and when to wake it (CURLMOPT_TIMERFUNCTION → uv_timer). Finished and
 * cancelled requests go through a queue so that user callbacks run only
 * from the loop, never inside curl or inside our own API calls. */
#include "mcp/http.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "curl_shim.h" /* curl, loaded on first use */

#include "mcp/util.h"

/* One socket curl asked us to watch. */
typedef struct http_sock {
    uv_poll_t poll;
    curl_socket_t fd;
    struct mcp_http *client;
    struct http_sock *prev, *next; /* the client's open sockets */
} http_sock;

struct mcp_http_req {
    mcp_http *client;
    CURL *easy;
    struct curl_slist *header_list;
    char *body_copy;
    mcp_http_cb cb;
    void *ud;
    mcp_http_version version;
    mcp_http_data_cb on_data; /* streaming: the body goes here, not into body */
    void *data_ud;
    bool aborted; /* on_data asked to stop */
    size_t max_response;
    int64_t started_ms;
    bool queued;    /* finished or cancelled, waiting for delivery */
    bool cancelled; /* ended by cancel/destroy */
    bool too_large;
    bool oom;
    CURLcode result;
    /* the response being built */
    char *body;
    size_t body_len, body_cap;
    mcp_http_header *hdrs;
    size_t n_hdrs, cap_hdrs;
    bool headers_done;         /* the blank line after the headers was seen */
    mcp_http_req *prev, *next; /* the client's active requests */
    mcp_http_req *qnext;       /* the delivery queue */
    char errbuf[CURL_ERROR_SIZE];
    char reason[CURL_ERROR_SIZE + 32];
};

struct mcp_http {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;      /* curl's timeout */
    uv_timer_t done_timer; /* delivers queued callbacks on the next loop turn */
    int open_handles;      /* uv handles whose close callback is still due */
    bool destroying;
    bool done_timer_closed;
    int delivering; /* depth of http_drain */
    mcp_http_req *active;
    mcp_http_req *done_head, *done_tail;
    http_sock *socks;
};

static void http_drain(mcp_http *c);

/* ---- handles and teardown ----------------------------------------------- */

static void http_free_if_done(mcp_http *c)
{
    if (c->destroying && c->open_handles == 0 && c->done_timer_closed)
        free(c);
}

static void on_timer_closed(uv_handle_t *h)
{
    mcp_http *c = h->data;
    c->open_handles--;
    http_free_if_done(c);
}

static void on_done_timer_closed(uv_handle_t *h)
{
    mcp_http *c = h->data;
    c->open_handles--;
    c->done_timer_closed = true;
    http_free_if_done(c);
}

static void on_sock_closed(uv_handle_t *h)
{
    http_sock *s = h->data;
    mcp_http *c = s->client;
    free(s);
    c->open_handles--;
    http_free_if_done(c);
}

static void sock_close(http_sock *s)
{
    MCP_LIST_UNLINK(s->client->socks, s);
    uv_poll_stop(&s->poll);
    uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

/* ---- requests: memory --------------------------------------------------- */

static void req_free_response(mcp_http_req *r)
{
    for (size_t i = 0; i < r->n_hdrs; i++) {
        free(r->hdrs[i].name);
        free(r->hdrs[i].value);
    }
    free(r->hdrs);
    r->hdrs = NULL;
    r->n_hdrs = r->cap_hdrs = 0;
}

static void req_free(mcp_http_req *r)
{
    if (r->easy)
        curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->header_list);
    free(r->body_copy);
    free(r->body);
    req_free_response(r);
    free(r);
}

static void active_unlink(mcp_http_req *r)
{
    MCP_LIST_UNLINK(r->client->active, r);
    r->prev = r->next = NULL;
}

/* Takes r off curl and puts it on the delivery queue. */
static void req_queue(mcp_http_req *r, CURLcode result)
{
    mcp_http *c = r->client;
    r->result = result;
    r->queued = true;
    active_unlink(r);
    if (c->multi)
        curl_multi_remove_handle(c->multi, r->easy);
    r->qnext = NULL;
    if (c->done_tail)
        c->done_tail->qnext = r;
    else
        c->done_head = r;
    c->done_tail = r;
}

/* ---- curl → response ---------------------------------------------------- */

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
    mcp_http_req *r = ud;
    size_t n = size * nmemb;
    if (r->on_data) {
        long status = 0;
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
        if (!r->on_data(data, n, status, r->data_ud)) {
            r->aborted = true;
            return 0; /* CURLE_WRITE_ERROR */
        }
        return n;
    }
    if (r->body_len + n > r->max_response) {
        r->too_large = true;
        return 0; /* makes curl fail with CURLE_WRITE_ERROR */
    }
    if (mcp_bytes_append(&r->body, &r->body_len, &r->body_cap, data, n, 4096, 0) != 0) {
        r->oom = true;
        return 0;
    }
    return n;
}

static int req_add_header(mcp_http_req *r, const char *line, size_t len)
{
    const char *colon = memchr(line, ':', len);
    if (!colon)
        return 0; /* not a header line: ignore */
    const char *v = colon + 1, *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    if (r->n_hdrs == r->cap_hdrs) {
        size_t cap = r->cap_hdrs ? r->cap_hdrs * 2 : 16;
        mcp_http_header *nh = realloc(r->hdrs, cap * sizeof *nh);
        if (!nh)
            return -1;
        r->hdrs = nh;
        r->cap_hdrs = cap;
    }
    mcp_http_header *h = &r->hdrs[r->n_hdrs];
    h->name = mcp_strndup(line, (size_t)(colon - line));
    h->value = mcp_strndup(v, (size_t)(end - v));
    h->trailer = r->headers_done;
    if (!h->name || !h->value) {
        free(h->name);
        free(h->value);
        return -1;
    }
    r->n_hdrs++;
    return 0;
}

/* curl hands over one line at a time: a status line starts a (new) response
 * (after a 1xx), the blank line ends its headers, and what follows it are
 * trailers. */
static size_t on_header(char *data, size_t size, size_t nmemb, void *ud)
{
    mcp_http_req *r = ud;
    size_t n = size * nmemb, len = n;
    while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r'))
        len--;
    if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        req_free_response(r);
        r->headers_done = false;
    } else if (len == 0) {
        r->headers_done = true;
    } else if (req_add_header(r, data, len) != 0) {
        r->oom = true;
        return 0;
    }
    return n;
}

static bool is_tls_error(CURLcode rc)
{
    switch (rc) {
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_USE_SSL_FAILED:
        return true;
    default:
        return false;
    }
}

/* An end the client itself caused rather than the transfer. */
typedef struct own_end {
    const char *reason;
    const char *error; /* NULL: curl's error */
} own_end;

static const own_end *req_own_end(const mcp_http_req *r)
{
    static const own_end cancelled = {"cancelled", "cancelled"};
    static const own_end too_large = {"too large", "response body larger than the cap"};
    static const own_end oom = {"out of memory", NULL};
    static const own_end aborted = {"aborted", "aborted by the receiver"};
    if (r->cancelled)
        return &cancelled;
    if (r->too_large)
        return &too_large;
    if (r->oom)
        return &oom;
    return r->aborted ? &aborted : NULL;
}

/* Fills r->reason: short and stable for the common failures. */
static void req_reason(mcp_http_req *r, const char *error, long os_errno)
{
    const char *fixed = NULL;
    CURLcode rc = r->result;
    const own_end *own = req_own_end(r);
    if (own)
        fixed = own->reason;
    else if (rc == CURLE_OK)
        fixed = "";
    else if (rc == CURLE_OPERATION_TIMEDOUT)
        fixed = "timeout";
    else if (rc == CURLE_COULDNT_CONNECT)
        fixed = (os_errno == ETIMEDOUT) ? "timeout" : "refused";
    else if (rc == CURLE_COULDNT_RESOLVE_HOST)
        fixed = "dns";
    else if (rc == CURLE_GOT_NOTHING)
        fixed = "reset";
    else if ((rc == CURLE_RECV_ERROR || rc == CURLE_SEND_ERROR) &&
             (os_errno == ECONNRESET || os_errno == EPIPE))
        fixed = "reset";
    if (fixed) {
        snprintf(r->reason, sizeof r->reason, "%s", fixed);
    } else if (rc == CURLE_HTTP2 || rc == CURLE_HTTP2_STREAM) {
        snprintf(r->reason, sizeof r->reason, "http2 error: %s", error);
    } else if (is_tls_error(rc)) {
        snprintf(r->reason, sizeof r->reason, "tls: %s", error);
    } else if (rc == CURLE_RECV_ERROR && r->version == MCP_HTTP_2) {
        /* a peer that closes on our HTTP/2 preface */
        snprintf(r->reason, sizeof r->reason, "http2 error: %s", error);
    } else {
        snprintf(r->reason, sizeof r->reason, "%s", error);
    }
}

static int http_major_version(long v)
{
    switch (v) {
    case CURL_HTTP_VERSION_1_0:
    case CURL_HTTP_VERSION_1_1:
        return 1;
    case CURL_HTTP_VERSION_2_0:
        return 2;
    case CURL_HTTP_VERSION_3:
        return 3;
    default:
        return 0;
    }
}

/* Builds the response, calls back once, and frees the request. */
static void req_deliver(mcp_http_req *r)
{
    mcp_http_response res = {0};
    long status = 0, ver = 0, os_errno = 0;
    if (!r->cancelled) {
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_getinfo(r->easy, CURLINFO_HTTP_VERSION, &ver);
        curl_easy_getinfo(r->easy, CURLINFO_OS_ERRNO, &os_errno);
    }
    res.cancelled = r->cancelled;
    res.status = status;
    res.http_version = http_major_version(ver);
    res.curl_code = r->cancelled ? CURLE_ABORTED_BY_CALLBACK : (int)r->result;
    res.timed_out = !r->cancelled && r->result == CURLE_OPERATION_TIMEDOUT;
    res.too_large = r->too_large;

    const char *error = "";
    const own_end *own = req_own_end(r);
    if (own && own->error)
        error = own->error;
    else if (r->result != CURLE_OK)
        error = r->errbuf[0] ? r->errbuf : curl_easy_strerror(r->result);
    req_reason(r, error, os_errno);
    if (!r->cancelled && r->result == CURLE_OK && r->version == MCP_HTTP_2 &&
        res.http_version != 2) {
        /* curl falls back to HTTP/1.1 silently when ALPN does not pick h2 */
        error = "the server did not negotiate HTTP/2";
        snprintf(r->reason, sizeof r->reason, "not http/2");
    }
    res.error = error;
    res.reason = r->reason;
    res.body = r->body ? r->body : "";
    res.body_len = r->body_len;
    res.headers = r->hdrs;
    res.n_headers = r->n_hdrs;
    res.elapsed_s = (double)(mcp_now_ms() - r->started_ms) / 1000.0;
    r->cb(&res, r->ud);
    req_free(r);
}

/* Runs queued callbacks. A callback may start, cancel or destroy: the queue
 * is re-read after each one. */
static void http_drain(mcp_http *c)
{
    c->delivering++;
    mcp_http_req *r;
    while ((r = c->done_head) != NULL) {
        c->done_head = r->qnext;
        if (!c->done_head)
            c->done_tail = NULL;
        req_deliver(r);
    }
    c->delivering--;
    if (c->delivering == 0 && c->destroying && !c->done_timer_closed &&
        !uv_is_closing((uv_handle_t *)&c->done_timer))
        uv_close((uv_handle_t *)&c->done_timer, on_done_timer_closed);
}

static void on_done_timer(uv_timer_t *t)
{
    http_drain(t->data);
}

static void http_schedule_drain(mcp_http *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->done_timer))
        uv_timer_start(&c->done_timer, on_done_timer, 0, 0);
}

/* Moves every transfer curl reports finished to the queue, then delivers. */
static void http_check_done(mcp_http *c)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(c->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        mcp_http_req *r = NULL;
        CURLcode result = msg->data.result;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        if (r && !r->queued)
            req_queue(r, result);
    }
    if (c->delivering == 0)
        http_drain(c);
}

/* ---- curl ↔ libuv ------------------------------------------------------- */

static void on_poll(uv_poll_t *h, int status, int events)
{
    http_sock *s = h->data;
    mcp_http *c = s->client;
    int flags = 0;
    if (status < 0) {
        flags = CURL_CSELECT_ERR;
    } else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    int running;
    curl_multi_socket_action(c->multi, s->fd, flags, &running);
    http_check_done(c);
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    mcp_http *c = userp;
    http_sock *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            curl_multi_assign(c->multi, fd, NULL);
            sock_close(s);
        }
        return 0;
    }
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s)
            return -1;
        if (uv_poll_init_socket(c->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->fd = fd;
        s->client = c;
        s->poll.data = s;
        s->next = c->socks;
        if (c->socks)
            c->socks->prev = s;
        c->socks = s;
        c->open_handles++;
        curl_multi_assign(c->multi, fd, s);
    }
    int events = 0;
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    return uv_poll_start(&s->poll, events, on_poll) == 0 ? 0 : -1;
}

static void on_timeout(uv_timer_t *t)
{
    mcp_http *c = t->data;
    int running;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    http_check_done(c);
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    mcp_http *c = userp;
    if (c->destroying)
        return 0;
    if (timeout_ms < 0)
        uv_timer_stop(&c->timer);
    else /* 0 means "as soon as possible": the next loop turn, not from inside curl */
        uv_timer_start(&c->timer, on_timeout, (uint64_t)timeout_ms, 0);
    return 0;
}

/* ---- public API --------------------------------------------------------- */

mcp_http *mcp_http_new(uv_loop_t *loop, mcp_error *err)
{
    static bool curl_ready;
    if (!curl_ready) {
        char why[256];
        if (mcp_curl_load(why, sizeof why) != 0) {
            mcp_error_set(err, "http: cannot load libcurl: %s", why);
            return NULL;
        }
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
            mcp_error_set(err, "http: curl_global_init failed");
            return NULL;
        }
        curl_ready = true;
    }
    mcp_http *c = calloc(1, sizeof *c);
    if (!c) {
        mcp_error_set(err, "http: out of memory");
        return NULL;
    }
    c->loop = loop;
    c->multi = curl_multi_init();
    if (!c->multi) {
        free(c);
        mcp_error_set(err, "http: curl_multi_init failed");
        return NULL;
    }
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    /* curl 7.88 breaks multiplexed or reused cleartext HTTP/2 connections
     * (curl #10634): one connection per transfer (WIRE.md). */
    curl_multi_setopt(c->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_NOTHING);
    uv_timer_init(loop, &c->timer);
    uv_timer_init(loop, &c->done_timer);
    c->timer.data = c;
    c->done_timer.data = c;
    c->open_handles = 2;
    return c;
}

void mcp_http_destroy(mcp_http *c)
{
    if (!c || c->destroying)
        return;
    c->destroying = true;
    while (c->active) {
        c->active->cancelled = true;
        req_queue(c->active, CURLE_ABORTED_BY_CALLBACK);
    }
    /* closes cached connections; their sockets come back as CURL_POLL_REMOVE */
    curl_multi_cleanup(c->multi);
    c->multi = NULL;
    while (c->socks)
        sock_close(c->socks);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
    if (c->done_head)
        http_schedule_drain(c);
    else if (c->delivering == 0)
        uv_close((uv_handle_t *)&c->done_timer, on_done_timer_closed);
}

static bool is_https(const char *url)
{
    return strncasecmp(url, "https:", 6) == 0;
}

/* Sets the method and body: binary-safe through POSTFIELDSIZE. */
static int req_set_method(mcp_http_req *r, const mcp_http_request *rq, mcp_error *err)
{
    CURL *e = r->easy;
    const char *method = rq->method ? rq->method : (rq->body_len > 0 ? "POST" : "GET");
    for (const char *p = method; *p; p++) {
        if (!isupper((unsigned char)*p)) {
            mcp_error_set(err, "http: bad method \"%s\"", method);
            return -1;
        }
    }
    if (rq->body_len > 0 || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0) {
        r->body_copy = malloc(rq->body_len + 1);
        if (!r->body_copy) {
            mcp_error_set(err, "http: out of memory");
            return -1;
        }
        if (rq->body_len > 0)
            memcpy(r->body_copy, rq->body, rq->body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body_copy);
        if (strcmp(method, "POST") != 0)
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    } else if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    }
    return 0;
}

static int req_set_headers(mcp_http_req *r, const mcp_http_request *rq, mcp_error *err)
{
    /* no "Expect: 100-continue" round trip for large bodies */
    const char *fixed[] = {"Expect:", NULL};
    for (int pass = 0; pass < 2; pass++) {
        const char *const *list = pass == 0 ? rq->headers : fixed;
        for (size_t i = 0; list && list[i]; i++) {
            if (!strchr(list[i], ':') || strpbrk(list[i], "\r\n")) {
                mcp_error_set(err, "http: bad header \"%s\" (want \"Name: value\")", list[i]);
                return -1;
            }
            struct curl_slist *n = curl_slist_append(r->header_list, list[i]);
            if (!n) {
                mcp_error_set(err, "http: out of memory");
                return -1;
            }
            r->header_list = n;
        }
    }
    curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->header_list);
    return 0;
}

static int req_setup(mcp_http_req *r, const mcp_http_request *rq, mcp_error *err)
{
    CURL *e = r->easy;
    int64_t timeout = rq->timeout_ms > 0 ? rq->timeout_ms : MCP_HTTP_DEFAULT_TIMEOUT_MS;
    int64_t connect = rq->connect_timeout_ms > 0 ? rq->connect_timeout_ms : timeout;
    bool ok = curl_easy_setopt(e, CURLOPT_URL, rq->url) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK;
    if (!ok) {
        mcp_error_set(err, "http: bad URL \"%s\"", rq->url);
        return -1;
    }
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, rq->no_deadline ? 0L : (long)timeout);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)connect);
    if (rq->unix_socket && curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, rq->unix_socket)) {
        mcp_error_set(err, "http: bad unix socket path \"%s\"", rq->unix_socket);
        return -1;
    }
    switch (rq->version) {
    case MCP_HTTP_1_1:
        curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
        break;
    case MCP_HTTP_2:
        if (is_https(rq->url)) {
            curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
        } else {
            curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
            /* curl 7.88 cannot reuse a cleartext HTTP/2 connection (WIRE.md) */
            curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
        }
        break;
    default:
        break;
    }
    if (rq->ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, rq->ca_file);
    if (rq->cert_file)
        curl_easy_setopt(e, CURLOPT_SSLCERT, rq->cert_file);
    if (rq->key_file)
        curl_easy_setopt(e, CURLOPT_SSLKEY, rq->key_file);
    if (req_set_method(r, rq, err) != 0 || req_set_headers(r, rq, err) != 0)
        return -1;
    return 0;
}

mcp_http_req *mcp_http_start(mcp_http *c, const mcp_http_request *rq, mcp_http_cb cb, void *ud,
                             mcp_error *err)
{
    if (!c || c->destroying) {
        mcp_error_set(err, "http: the client is being destroyed");
        return NULL;
    }
    if (!rq || !rq->url || !cb) {
        mcp_error_set(err, "http: a request needs a URL and a callback");
        return NULL;
    }
    if (strncasecmp(rq->url, "http://", 7) != 0 && !is_https(rq->url)) {
        mcp_error_set(err, "http: bad URL \"%s\" (want http:// or https://)", rq->url);
        return NULL;
    }
    mcp_http_req *r = calloc(1, sizeof *r);
    if (!r || !(r->easy = curl_easy_init())) {
        free(r);
        mcp_error_set(err, "http: out of memory");
        return NULL;
    }
    r->client = c;
    r->cb = cb;
    r->ud = ud;
    r->version = rq->version;
    r->on_data = rq->on_data;
    r->data_ud = rq->data_ud;
    r->max_response = rq->max_response ? rq->max_response : MCP_HTTP_DEFAULT_MAX_RESPONSE;
    r->started_ms = mcp_now_ms();
    if (req_setup(r, rq, err) != 0) {
        req_free(r);
        return NULL;
    }
    CURLMcode mc = curl_multi_add_handle(c->multi, r->easy);
    if (mc != CURLM_OK) {
        mcp_error_set(err, "http: %s", curl_multi_strerror(mc));
        req_free(r);
        return NULL;
    }
    r->next = c->active;
    if (c->active)
        c->active->prev = r;
    c->active = r;
    return r;
}

void mcp_http_cancel(mcp_http_req *r)
{
    if (!r || r->queued)
        return;
    r->cancelled = true;
    req_queue(r, CURLE_ABORTED_BY_CALLBACK);
    http_schedule_drain(r->client);
}

const char *mcp_http_find_header(const mcp_http_response *res, const char *name, int where)
{
    for (size_t i = 0; res && name && i < res->n_headers; i++) {
        const mcp_http_header *h = &res->headers[i];
        if (where == MCP_HTTP_IN_HEADERS && h->trailer)
            continue;
        if (where == MCP_HTTP_IN_TRAILERS && !h->trailer)
            continue;
        if (strcasecmp(h->name, name) == 0)
            return h->value;
    }
    return NULL;
}
