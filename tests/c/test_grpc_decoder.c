/* The incremental gRPC message decoder (mcp_grpc_decoder, grpc_client.c):
 * length-prefixed messages reassembled from chunks split at every byte
 * boundary, oversized and compressed messages refused on the prefix, a
 * receiver that stops the stream, and what a failed decoder does next. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mcp/grpc_client.h"

/* What the decoder handed over: the messages, in order, joined with lengths. */
typedef struct seen {
    int n;
    size_t lens[16];
    uint8_t bytes[4096];
    size_t used;
    int stop_after; /* > 0: return ABORTED from the stop_after-th message */
} seen;

static int on_msg(const uint8_t *msg, size_t len, void *ud)
{
    seen *s = ud;
    assert_true(s->n < 16);
    assert_true(s->used + len <= sizeof s->bytes);
    s->lens[s->n++] = len;
    if (len)
        memcpy(s->bytes + s->used, msg, len);
    s->used += len;
    return s->stop_after > 0 && s->n == s->stop_after ? MCP_GRPC_ABORTED : 0;
}

/* Frames msgs[i] (lens[i] bytes) one after the other into out; returns the length. */
static size_t frame_all(uint8_t *out, const char *const *msgs, const size_t *lens, int n)
{
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        mcp_grpc_put_prefix(out + at, lens[i]);
        at += MCP_GRPC_PREFIX_LEN;
        memcpy(out + at, msgs[i], lens[i]);
        at += lens[i];
    }
    return at;
}

static void assert_seen(const seen *s, const char *const *msgs, const size_t *lens, int n)
{
    assert_int_equal(s->n, n);
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        assert_int_equal(s->lens[i], lens[i]);
        assert_memory_equal(s->bytes + at, msgs[i], lens[i]);
        at += lens[i];
    }
}

/* Three messages (one empty, one with NUL bytes, one longer than a prefix)
 * arrive whole, in two chunks split at every byte, and in three chunks split
 * at every pair of bytes: always the same three messages, in order. */
static void test_split_at_every_boundary(void **state)
{
    (void)state;
    const char *const msgs[] = {"first message", "", "a\0b\0c", "the third and longest one"};
    const size_t lens[] = {13, 0, 5, 25};
    uint8_t wire[256];
    size_t total = frame_all(wire, msgs, lens, 4);
    mcp_error err = {{0}};
    for (size_t cut1 = 0; cut1 <= total; cut1++) {
        for (size_t cut2 = cut1; cut2 <= total; cut2++) {
            mcp_grpc_decoder d;
            mcp_grpc_decoder_init(&d, 64);
            seen s = {0};
            assert_int_equal(mcp_grpc_decoder_feed(&d, wire, cut1, on_msg, &s, &err), 0);
            assert_int_equal(mcp_grpc_decoder_feed(&d, wire + cut1, cut2 - cut1, on_msg, &s, &err),
                             0);
            assert_int_equal(mcp_grpc_decoder_feed(&d, wire + cut2, total - cut2, on_msg, &s, &err),
                             0);
            assert_seen(&s, msgs, lens, 4);
            assert_true(mcp_grpc_decoder_idle(&d));
            mcp_grpc_decoder_free(&d);
        }
    }
    /* one byte at a time, and idle only between messages */
    mcp_grpc_decoder d;
    mcp_grpc_decoder_init(&d, 0);
    seen s = {0};
    size_t ends[4], at = 0;
    for (int i = 0; i < 4; i++)
        ends[i] = (at += MCP_GRPC_PREFIX_LEN + lens[i]);
    for (size_t i = 0; i < total; i++) {
        assert_int_equal(mcp_grpc_decoder_feed(&d, wire + i, 1, on_msg, &s, &err), 0);
        bool at_end = false;
        for (int k = 0; k < 4; k++)
            at_end = at_end || ends[k] == i + 1;
        assert_int_equal(mcp_grpc_decoder_idle(&d), at_end);
    }
    assert_seen(&s, msgs, lens, 4);
    mcp_grpc_decoder_free(&d);
}

/* A prefix longer than max_msg is refused as soon as the prefix is whole,
 * whatever the split, before any byte of the message is kept; a message of
 * exactly max_msg bytes passes. */
static void test_oversize_refused_on_the_prefix(void **state)
{
    (void)state;
    uint8_t wire[MCP_GRPC_PREFIX_LEN + 8];
    const char *const ok_msgs[] = {"12345678"};
    const size_t ok_lens[] = {8};
    size_t total = frame_all(wire, ok_msgs, ok_lens, 1);
    mcp_error err = {{0}};
    for (size_t cut = 0; cut <= total; cut++) {
        mcp_grpc_decoder d;
        mcp_grpc_decoder_init(&d, 7);
        seen s = {0};
        int rc1 = mcp_grpc_decoder_feed(&d, wire, cut, on_msg, &s, &err);
        int rc = rc1 ? rc1 : mcp_grpc_decoder_feed(&d, wire + cut, total - cut, on_msg, &s, &err);
        assert_int_equal(rc, MCP_GRPC_RESOURCE_EXHAUSTED);
        assert_int_equal(rc1 != 0, cut >= MCP_GRPC_PREFIX_LEN); /* on the prefix, not later */
        assert_non_null(strstr(err.msg, "exceeds"));
        assert_int_equal(s.n, 0);
        assert_null(d.msg);
        assert_false(mcp_grpc_decoder_idle(&d));
        /* a failed decoder refuses what follows with the same status */
        assert_int_equal(mcp_grpc_decoder_feed(&d, wire, 1, on_msg, &s, &err),
                         MCP_GRPC_RESOURCE_EXHAUSTED);
        mcp_grpc_decoder_free(&d);

        mcp_grpc_decoder_init(&d, 8);
        memset(&s, 0, sizeof s);
        assert_int_equal(mcp_grpc_decoder_feed(&d, wire, cut, on_msg, &s, &err), 0);
        assert_int_equal(mcp_grpc_decoder_feed(&d, wire + cut, total - cut, on_msg, &s, &err), 0);
        assert_seen(&s, ok_msgs, ok_lens, 1);
        mcp_grpc_decoder_free(&d);
    }
    /* 4 GiB - 1 announced: refused at once, nothing allocated */
    const uint8_t huge[] = {0, 0xff, 0xff, 0xff, 0xff};
    mcp_grpc_decoder d;
    mcp_grpc_decoder_init(&d, 0);
    seen s = {0};
    assert_int_equal(mcp_grpc_decoder_feed(&d, huge, sizeof huge, on_msg, &s, &err),
                     MCP_GRPC_RESOURCE_EXHAUSTED);
    assert_null(d.msg);
    mcp_grpc_decoder_free(&d);
}

static void test_compressed_refused(void **state)
{
    (void)state;
    const uint8_t wire[] = {1, 0, 0, 0, 2, 'h', 'i'};
    mcp_grpc_decoder d;
    mcp_grpc_decoder_init(&d, 0);
    seen s = {0};
    mcp_error err = {{0}};
    assert_int_equal(mcp_grpc_decoder_feed(&d, wire, sizeof wire, on_msg, &s, &err),
                     MCP_GRPC_INTERNAL);
    assert_non_null(strstr(err.msg, "compressed"));
    assert_int_equal(s.n, 0);
    mcp_grpc_decoder_free(&d);
}

/* The receiver's status stops the decoder in the middle of a chunk: nothing
 * after that message is handed over. A message cut off by the end of the
 * stream leaves the decoder not idle and frees cleanly. */
static void test_receiver_stops_and_truncated_end(void **state)
{
    (void)state;
    const char *const msgs[] = {"one", "two", "three"};
    const size_t lens[] = {3, 3, 5};
    uint8_t wire[64];
    size_t total = frame_all(wire, msgs, lens, 3);
    mcp_grpc_decoder d;
    mcp_grpc_decoder_init(&d, 0);
    seen s = {.stop_after = 2};
    mcp_error err = {{0}};
    assert_int_equal(mcp_grpc_decoder_feed(&d, wire, total, on_msg, &s, &err), MCP_GRPC_ABORTED);
    assert_seen(&s, msgs, lens, 2);
    assert_int_equal(mcp_grpc_decoder_feed(&d, wire, total, on_msg, &s, &err), MCP_GRPC_ABORTED);
    assert_int_equal(s.n, 2);
    mcp_grpc_decoder_free(&d);

    mcp_grpc_decoder_init(&d, 0);
    memset(&s, 0, sizeof s);
    assert_int_equal(mcp_grpc_decoder_feed(&d, wire, total - 2, on_msg, &s, &err), 0);
    assert_seen(&s, msgs, lens, 2);
    assert_false(mcp_grpc_decoder_idle(&d));
    mcp_grpc_decoder_free(&d); /* the partial message is freed (ASan checks) */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_at_every_boundary),
        cmocka_unit_test(test_oversize_refused_on_the_prefix),
        cmocka_unit_test(test_compressed_refused),
        cmocka_unit_test(test_receiver_stops_and_truncated_end),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
