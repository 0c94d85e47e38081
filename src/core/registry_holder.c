/* Who holds the registry open: a fuser-like scan of /proc/PID/fd, so that "the
 * registry is locked" can name the process to look at. Best effort: processes
 * of other users are not readable without privilege and are simply missed. */
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "registry_db.h"

#define MAX_NAMED 4 /* holders named in one message */

/* The process's command name (/proc/PID/comm), or "?". */
static void proc_comm(const char *pid, char *out, size_t len)
{
    char path[300];
    snprintf(path, sizeof path, "/proc/%s/comm", pid);
    snprintf(out, len, "?");
    FILE *f = fopen(path, "re");
    if (!f)
        return;
    if (fgets(out, (int)len, f))
        out[strcspn(out, "\n")] = '\0';
    fclose(f);
}

/* True when a descriptor of process pid points at target (or its -wal/-shm). */
static bool proc_has_open(const char *pid, const char *target)
{
    char dir[300];
    snprintf(dir, sizeof dir, "/proc/%s/fd", pid);
    DIR *d = opendir(dir);
    if (!d)
        return false;
    size_t tlen = strlen(target);
    bool found = false;
    struct dirent *e;
    while (!found && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char fd[600], link[PATH_MAX];
        snprintf(fd, sizeof fd, "%s/%s", dir, e->d_name);
        ssize_t n = readlink(fd, link, sizeof link - 1);
        if (n <= 0)
            continue;
        link[n] = '\0';
        found = strncmp(link, target, tlen) == 0 &&
                (link[tlen] == '\0' || strcmp(link + tlen, "-wal") == 0 ||
                 strcmp(link + tlen, "-shm") == 0);
    }
    closedir(d);
    return found;
}

size_t reg_find_holders(const char *path, char *out, size_t len)
{
    if (len)
        out[0] = '\0';
    char target[PATH_MAX];
    if (!realpath(path, target))
        return 0;
    DIR *proc = opendir("/proc");
    if (!proc)
        return 0;
    char self[32];
    snprintf(self, sizeof self, "%ld", (long)getpid());
    size_t found = 0, used = 0;
    struct dirent *e;
    while ((e = readdir(proc)) != NULL) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9' || strcmp(e->d_name, self) == 0)
            continue;
        if (!proc_has_open(e->d_name, target))
            continue;
        if (found++ >= MAX_NAMED)
            continue; /* counted, not named */
        char comm[64];
        proc_comm(e->d_name, comm, sizeof comm);
        int n =
            snprintf(out + used, len - used, "%spid %s (%s)", used ? ", " : "", e->d_name, comm);
        if (n < 0 || (size_t)n >= len - used)
            break;
        used += (size_t)n;
    }
    closedir(proc);
    if (found > MAX_NAMED && used + 24 < len)
        snprintf(out + used, len - used, " and %zu more", found - MAX_NAMED);
    return found;
}
