/* Go-style durations: "150ms", "2m30s", "1h", "1.5s", "300us", "0". */
#ifndef MCP_DURATION_H
#define MCP_DURATION_H

#include <stddef.h>
#include <stdint.h>

/* Parses s into milliseconds (sub-millisecond parts are rounded up to 1 ms
 * when nonzero). Units: ns us µs ms s m h. Negative durations are refused.
 * Returns 0, or -1 with a short reason in why (e.g. "missing unit in \"5\""). */
int mcp_duration_parse(const char *s, int64_t *ms, char *why, size_t whylen);
/* Formats ms Go-style ("1m30s", "150ms", "0s") into buf. */
void mcp_duration_format(int64_t ms, char *buf, size_t len);

#endif
