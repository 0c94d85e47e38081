/* libFuzzer: what Metacrypt answers (the JSON of a 200, the error of a
 * refusal) and the PEM parsing behind it. The answer is fed to the same
 * completion the HTTP client calls, so certs.c is compiled into this
 * harness to reach its static functions. The first byte picks the part. */
#include "../../src/core/certs.c"

#include <stdint.h>

static char cert_dir[64];

static void remove_dir(void)
{
    char p[MCP_CERTS_PATH_MAX];
    snprintf(p, sizeof p, "%s/svc.pem", cert_dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/svc.key", cert_dir);
    unlink(p);
    rmdir(cert_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    mcp_log_set_level(MCP_LOG_ERROR);
    snprintf(cert_dir, sizeof cert_dir, "/tmp/mcp-fuzz-certs-%ld", (long)getpid());
    atexit(remove_dir);
    return 0;
}

static void on_result(const mcp_certs_result *res, void *ud)
{
    if (!res->ok && !res->reason[0])
        __builtin_trap(); /* a failure always has a reason */
    *(int *)ud += 1;
}

static void answer(long status, const uint8_t *data, size_t size)
{
    mcp_certs_op *op = calloc(1, sizeof *op);
    char *body = malloc(size + 1);
    if (!op || !body || !(op->cert_dir = strdup(cert_dir)) ||
        mcp_strv_push(&op->hostnames, "svc.example.com") != 0 ||
        fill_paths(&op->res, cert_dir, "svc", NULL) != 0)
        abort();
    memcpy(body, data, size);
    body[size] = '\0';
    int called = 0;
    op->cb = on_result;
    op->ud = &called;
    mcp_http_response hr = {.error = "",
                            .reason = "",
                            .status = status,
                            .http_version = 2,
                            .body = body,
                            .body_len = size};
    on_issue_done(&hr, op); /* frees op */
    free(body);
    if (called != 1)
        __builtin_trap();
}

static void check_pem(const uint8_t *data, size_t size)
{
    const char *names[] = {"svc.example.com", "*.example.com"};
    mcp_cert_info info;
    mcp_cert_status st =
        mcp_certs_check_pem((const char *)data, size, names, 2, 30, 1800000000, &info);
    (void)mcp_cert_status_name(st);
}

/* Certificate and key split at the first "\n\n". */
static void key_matches(const uint8_t *data, size_t size)
{
    size_t cut = size;
    for (size_t i = 0; i + 1 < size; i++)
        if (data[i] == '\n' && data[i + 1] == '\n') {
            cut = i + 1;
            break;
        }
    mcp_error err = {{0}};
    (void)mcp_certs_key_matches((const char *)data, cut, (const char *)data + cut, size - cut,
                                &err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    switch (data[0] % 4) {
    case 0:
        answer(200, data + 1, size - 1);
        break;
    case 1:
        answer(400 + data[0] % 100, data + 1, size - 1);
        break;
    case 2:
        check_pem(data + 1, size - 1);
        break;
    default:
        key_matches(data + 1, size - 1);
        break;
    }
    return 0;
}
