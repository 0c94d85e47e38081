/* Loads a library's functions on first use: see dl_shim.h for why. */
#include "dl_shim.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* dlsym into a function pointer without the object/function pointer
 * conversion ISO C leaves undefined: copy the bytes. */
static int bind_symbol(void *handle, const mcp_dl_lib *lib, const char *name, void *slot, char *why,
                       size_t len)
{
    void *sym = dlsym(handle, name);
    if (!sym) {
        snprintf(why, len, "%s: no symbol %s", lib->soname, name);
        return -1;
    }
    memcpy(slot, &sym, sizeof sym);
    return 0;
}

static int failed(mcp_dl_lib *lib, char *why, size_t len)
{
    lib->state = -1;
    snprintf(why, len, "%s", lib->why);
    return -1;
}

int mcp_dl_load(mcp_dl_lib *lib, const char *const names[], size_t n, void *table,
                size_t table_size, char *why, size_t len)
{
    if (lib->state == 1)
        return 0;
    if (lib->state == -1) {
        snprintf(why, len, "%s", lib->why);
        return -1;
    }
    void *handle = dlopen(lib->soname, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        const char *e = dlerror();
        snprintf(lib->why, sizeof lib->why, "%s", e ? e : lib->soname);
        return failed(lib, why, len);
    }
    if (table_size != n * sizeof(void (*)(void))) {
        snprintf(lib->why, sizeof lib->why, "%s: %zu names for a table of %zu bytes", lib->soname,
                 n, table_size);
        dlclose(handle);
        return failed(lib, why, len);
    }
    char *staged = calloc(1, table_size);
    if (!staged) {
        snprintf(lib->why, sizeof lib->why, "%s: out of memory", lib->soname);
        dlclose(handle);
        return failed(lib, why, len);
    }
    for (size_t i = 0; i < n; i++) {
        void *slot = staged + i * sizeof(void (*)(void));
        if (bind_symbol(handle, lib, names[i], slot, lib->why, sizeof lib->why) != 0) {
            free(staged);
            dlclose(handle);
            return failed(lib, why, len);
        }
    }
    memcpy(table, staged, table_size);
    free(staged);
    lib->state = 1; /* the library stays loaded for the life of the process */
    return 0;
}
