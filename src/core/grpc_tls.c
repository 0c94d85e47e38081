/* TLS for the gRPC server over memory BIOs (grpc_tls.h). */
#include "mcp/grpc_tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/stat.h>

#include "mcp/log.h"

struct mcp_tls_ctx {
    SSL_CTX *ssl_ctx;
};

struct mcp_tls {
    SSL *ssl;
};

static int alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    for (unsigned i = 0; i < inlen;) {
        unsigned n = in[i];
        if (i + 1 + n > inlen)
            break;
        if (n == 2 && memcmp(in + i + 1, "h2", 2) == 0) {
            *out = in + i + 1;
            *outlen = 2;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + n;
    }
    return SSL_TLSEXT_ERR_ALERT_FATAL; /* gRPC needs HTTP/2 */
}

static void ssl_error(mcp_error *err, const char *what, const char *file)
{
    char buf[256];
    unsigned long e = ERR_get_error();
    if (e)
        ERR_error_string_n(e, buf, sizeof buf);
    else
        snprintf(buf, sizeof buf, "%s", "unknown error");
    mcp_error_set(err, "grpc tls: %s %s: %s", what, file ? file : "", buf);
    ERR_clear_error();
}

/* A key others can read is a key others may have: said loudly, not refused
 * (the operator may have a reason, e.g. a group that backs it up). */
static void warn_if_key_readable(const char *key_file)
{
    struct stat st;
    if (stat(key_file, &st) != 0 || !(st.st_mode & (S_IRGRP | S_IROTH)))
        return;
    char mode[8], fix[600];
    snprintf(mode, sizeof mode, "%04o", (unsigned)(st.st_mode & 07777));
    snprintf(fix, sizeof fix, "chmod 600 %s", key_file);
    mcp_log(MCP_LOG_WARN, "grpc tls: the private key is readable by group or others", "path",
            key_file, "mode", mode, "fix", fix, NULL);
}

mcp_tls_ctx *mcp_tls_ctx_new(const char *cert_file, const char *key_file, const char *ca_file,
                             mcp_error *err)
{
    if (!cert_file || !*cert_file || !key_file || !*key_file || !ca_file || !*ca_file) {
        mcp_error_set(err, "grpc tls: cert_file, key_file and ca_file are all required for a "
                           "TLS listener");
        return NULL;
    }
    mcp_tls_ctx *t = calloc(1, sizeof *t);
    if (!t) {
        mcp_error_set(err, "grpc tls: out of memory");
        return NULL;
    }
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        ssl_error(err, "cannot create context", NULL);
        free(t);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        ssl_error(err, "cannot load certificate chain", cert_file);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        ssl_error(err, "cannot load private key", key_file);
        goto fail;
    }
    warn_if_key_readable(key_file);
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ssl_error(err, "private key does not match the certificate:", key_file);
        goto fail;
    }
    if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
        ssl_error(err, "cannot load CA", ca_file);
        goto fail;
    }
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca_file);
    if (!names) {
        ssl_error(err, "no CA certificate in", ca_file);
        goto fail;
    }
    SSL_CTX_set_client_CA_list(ctx, names);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select_cb, NULL);
    t->ssl_ctx = ctx;
    return t;
fail:
    SSL_CTX_free(ctx);
    free(t);
    return NULL;
}

void mcp_tls_ctx_free(mcp_tls_ctx *ctx)
{
    if (!ctx)
        return;
    SSL_CTX_free(ctx->ssl_ctx);
    free(ctx);
}

mcp_tls *mcp_tls_new(mcp_tls_ctx *ctx)
{
    mcp_tls *t = calloc(1, sizeof *t);
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    if (t)
        t->ssl = SSL_new(ctx->ssl_ctx);
    if (!t || !t->ssl || !rb || !wb) {
        BIO_free(rb);
        BIO_free(wb);
        if (t)
            SSL_free(t->ssl);
        free(t);
        ERR_clear_error();
        return NULL;
    }
    SSL_set_bio(t->ssl, rb, wb); /* the SSL owns both BIOs now */
    SSL_set_accept_state(t->ssl);
    return t;
}

void mcp_tls_free(mcp_tls *t)
{
    if (!t)
        return;
    SSL_free(t->ssl);
    ERR_clear_error();
    free(t);
}

static const char *tls_error_text(char *buf, size_t n)
{
    unsigned long e = ERR_peek_last_error();
    if (!e)
        return "connection closed during handshake";
    ERR_error_string_n(e, buf, n);
    return buf;
}

mcp_tls_state mcp_tls_recv(mcp_tls *t, const uint8_t *data, size_t len, char *why, size_t whylen)
{
    if (len > 0 && BIO_write(SSL_get_rbio(t->ssl), data, (int)len) != (int)len) {
        snprintf(why, whylen, "%s", "out of memory for TLS input");
        return MCP_TLS_FAILED;
    }
    if (SSL_is_init_finished(t->ssl))
        return MCP_TLS_READY;
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    if (r != 1) {
        int e = SSL_get_error(t->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            return MCP_TLS_AGAIN;
        char buf[256];
        snprintf(why, whylen, "%s", tls_error_text(buf, sizeof buf));
        return MCP_TLS_FAILED;
    }
    const unsigned char *alpn = NULL;
    unsigned alpn_len = 0;
    SSL_get0_alpn_selected(t->ssl, &alpn, &alpn_len);
    if (alpn_len != 2 || memcmp(alpn, "h2", 2) != 0) {
        snprintf(why, whylen, "%s", "TLS client did not negotiate h2");
        return MCP_TLS_FAILED;
    }
    return MCP_TLS_READY;
}

bool mcp_tls_ready(const mcp_tls *t)
{
    return SSL_is_init_finished(t->ssl);
}

int mcp_tls_read(mcp_tls *t, uint8_t *buf, size_t size)
{
    ERR_clear_error();
    int n = SSL_read(t->ssl, buf, size > INT32_MAX ? INT32_MAX : (int)size);
    if (n > 0)
        return n;
    int e = SSL_get_error(t->ssl, n);
    return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? 0 : -1;
}

int mcp_tls_write(mcp_tls *t, const uint8_t *data, size_t len)
{
    ERR_clear_error();
    if (len > INT32_MAX || SSL_write(t->ssl, data, (int)len) <= 0)
        return -1;
    return 0;
}

size_t mcp_tls_take_output(mcp_tls *t, uint8_t *buf, size_t size)
{
    BIO *wb = SSL_get_wbio(t->ssl);
    if (BIO_pending(wb) <= 0)
        return 0;
    int n = BIO_read(wb, buf, size > INT32_MAX ? INT32_MAX : (int)size);
    return n > 0 ? (size_t)n : 0;
}

void mcp_tls_close_notify(mcp_tls *t)
{
    ERR_clear_error();
    if (SSL_is_init_finished(t->ssl))
        SSL_shutdown(t->ssl); /* queues close_notify */
    ERR_clear_error();
}

bool mcp_tls_peer_cn(const mcp_tls *t, char *buf, size_t size)
{
    X509 *cert = SSL_get1_peer_certificate(t->ssl);
    if (!cert)
        return false;
    char cn[128];
    bool ok =
        X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn) > 0;
    if (ok)
        snprintf(buf, size, "%s", cn);
    X509_free(cert);
    return ok;
}
