/* core.hash: digests for labels and change detection (the spec-hash label
 * of SPEC §10). sha256(string) -> 64 lowercase hex digits. */
#include <openssl/evp.h>

#include "internal.h"

static int l_sha256(lua_State *L)
{
    size_t len;
    const char *data = luaL_checklstring(L, 1, &len);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (EVP_Digest(data, len, md, &md_len, EVP_sha256(), NULL) != 1)
        return luaL_error(L, "sha256: the digest failed");
    static const char hex[] = "0123456789abcdef";
    char out[2 * EVP_MAX_MD_SIZE];
    for (unsigned int i = 0; i < md_len; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 0xf];
    }
    lua_pushlstring(L, out, 2 * (size_t)md_len);
    return 1;
}

int luaopen_mcp_hash(lua_State *L)
{
    static const luaL_Reg fns[] = {{"sha256", l_sha256}, {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}
