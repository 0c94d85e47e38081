/* "Did you mean …?": the nearest known word to a misspelt one, for unknown
 * commands, flags, config keys and service-definition keys alike. */
#ifndef MCP_SUGGEST_H
#define MCP_SUGGEST_H

#include <stddef.h>

/* Damerau-Levenshtein distance (adjacent swaps count one); (size_t)-1 when
 * either word is longer than 64 bytes. */
size_t mcp_edit_distance(const char *a, const char *b);

/* Close enough to be a typo of known: two edits at most, at most half its letters. */
int mcp_is_typo_of(const char *typed, const char *known, size_t dist);

/* The element of the NULL-terminated list known nearest to typed when it is
 * close enough to be a typo of it; else one it abbreviates ("comand" ->
 * "cmd"); else NULL. */
const char *mcp_suggest(const char *typed, const char *const *known);

#endif
