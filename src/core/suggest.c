/* Nearest-word suggestions (see mcp/suggest.h). */
#include "mcp/suggest.h"

#include <stdbool.h>
#include <string.h>

#define MAX_WORD 64

size_t mcp_edit_distance(const char *a, const char *b)
{
    size_t n = strlen(a), m = strlen(b);
    if (n > MAX_WORD || m > MAX_WORD)
        return (size_t)-1; /* nobody misspells a 64-letter word */
    size_t d[MAX_WORD + 1][MAX_WORD + 1];
    for (size_t i = 0; i <= n; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= m; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= n; i++) {
        for (size_t j = 1; j <= m; j++) {
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            size_t best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < best)
                best = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[n][m];
}

int mcp_is_typo_of(const char *typed, const char *known, size_t dist)
{
    return dist <= 2 && dist * 2 <= strlen(known) && typed[0] != '\0';
}

/* known is an abbreviation of typed: same first letter, its letters in
 * order within typed, typed at most about twice as long ("comand" -> "cmd",
 * "environment" -> "env"). */
static bool abbreviates(const char *known, const char *typed)
{
    size_t klen = strlen(known), tlen = strlen(typed);
    if (klen < 2 || known[0] != typed[0] || tlen > 2 * klen + 1 || tlen <= klen)
        return false;
    const char *t = typed;
    for (const char *k = known; *k; k++) {
        t = strchr(t, *k);
        if (!t)
            return false;
        t++;
    }
    return true;
}

const char *mcp_suggest(const char *typed, const char *const *known)
{
    const char *best = NULL;
    size_t best_d = (size_t)-1;
    for (const char *const *k = known; *k; k++) {
        size_t d = mcp_edit_distance(typed, *k);
        if (d < best_d && mcp_is_typo_of(typed, *k, d)) {
            best = *k;
            best_d = d;
        }
    }
    if (best)
        return best;
    /* no typo: maybe the long form of a short key; the longest such key wins */
    for (const char *const *k = known; *k; k++)
        if (abbreviates(*k, typed) && (!best || strlen(*k) > strlen(best)))
            best = *k;
    return best;
}
