/* libFuzzer: the parsers of podman's answers (ps -a, inspect, one events
 * line, run's id, RFC 3339 times). The first byte picks the parser. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mcp/podman.h"

static void parse_time(const uint8_t *data, size_t size)
{
    char buf[128];
    size_t n = size < sizeof buf - 1 ? size : sizeof buf - 1;
    memcpy(buf, data, n);
    buf[n] = '\0';
    double t;
    (void)mcp_podman_parse_time(buf, &t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *json = (const char *)data + 1;
    size_t len = size - 1;
    mcp_error err = {{0}};
    switch (data[0] % 5) {
    case 0: {
        mcp_container *cs = NULL;
        size_t n = 0;
        if (mcp_podman_parse_list(json, len, &cs, &n, &err) == 0)
            mcp_containers_free(cs, n);
        break;
    }
    case 1: {
        mcp_container c;
        if (mcp_podman_parse_inspect(json, len, &c, &err) == 0)
            mcp_container_free(&c);
        break;
    }
    case 2: {
        mcp_podman_event ev;
        if (mcp_podman_parse_event(json, len, &ev, &err) == 0)
            mcp_podman_event_free(&ev);
        break;
    }
    case 3:
        free(mcp_podman_parse_run(json, len));
        break;
    default:
        parse_time(data + 1, len);
        break;
    }
    return 0;
}
