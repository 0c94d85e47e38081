/* libFuzzer: the config loader (SPEC §3). It reads a path, so each input is
 * written to one file of this process first. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "mcp/config.h"
#include "mcp/log.h"

static char path[64];

static void remove_file(void)
{
    unlink(path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    mcp_log_set_level(MCP_LOG_ERROR);
    snprintf(path, sizeof path, "/tmp/mcp-fuzz-config-%ld.toml", (long)getpid());
    atexit(remove_file);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        abort();
    if (fwrite(data, 1, size, f) != size || fclose(f) != 0)
        abort();
    mcp_error err = {{0}};
    mcp_config cfg;
    if (mcp_config_load(path, &cfg, &err) == 0)
        mcp_config_free(&cfg);
    else if (!err.msg[0])
        __builtin_trap();
    return 0;
}
