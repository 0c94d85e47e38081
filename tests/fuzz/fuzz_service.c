/* libFuzzer: service definitions (TOML + validation) on any bytes. */
#include <stdint.h>
#include <stdlib.h>

#include "mcp/log.h"
#include "mcp/service.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    mcp_log_set_level(MCP_LOG_ERROR); /* unknown keys warn: keep the output quiet */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mcp_error err = {{0}};
    mcp_service svc;
    if (mcp_service_parse((const char *)data, size, "fuzz.toml", &svc, &err) == 0) {
        for (size_t i = 0; i < svc.n_components; i++) {
            char *name = mcp_container_name(svc.name, svc.components[i].name);
            if (!name)
                __builtin_trap();
            free(name);
        }
        mcp_service_free(&svc);
    } else if (!err.msg[0]) {
        __builtin_trap();
    }
    return 0;
}
