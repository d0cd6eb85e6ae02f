/* Makes a local job's host names (algo-1, algo-2, ...) resolve for every process of the job, in C.
 *
 * Loaded with LD_PRELOAD into a job's processes only (see host_names.py). It stands in front of
 * libc's name lookups: a name listed in EMULATOR_JOB_HOSTS (comma separated, read once at load) is
 * looked up as 127.0.0.1, where all of a job's hosts live; every other name goes to libc unchanged.
 * So torch's C++ TCPStore and gloo, NCCL, MPI, curl and Python's socket module all resolve
 * ``algo-N`` however late it is used, without /etc/hosts and without privileges.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HOST_ADDRESS "127.0.0.1"

static char job_hosts[8192];

__attribute__((constructor)) static void read_job_hosts(void) {
    const char *hosts = getenv("EMULATOR_JOB_HOSTS");
    if (hosts != NULL && strlen(hosts) < sizeof(job_hosts)) strcpy(job_hosts, hosts);
}

/* HOST_ADDRESS for a host name of the job (any case, an optional trailing dot), else ``name``. */
static const char *local_name(const char *name) {
    if (name == NULL || job_hosts[0] == '\0') return name;
    size_t length = strlen(name);
    if (length > 0 && name[length - 1] == '.') length--;
    if (length == 0) return name;
    for (const char *entry = job_hosts; *entry != '\0';) {
        const char *end = strchr(entry, ',');
        size_t entry_length = end ? (size_t)(end - entry) : strlen(entry);
        if (entry_length == length && strncasecmp(entry, name, length) == 0) return HOST_ADDRESS;
        if (end == NULL) break;
        entry = end + 1;
    }
    return name;
}

/* libc's own function (the next definition of ``symbol`` after this library) */
#define NEXT(symbol) static __typeof__(&symbol) next_##symbol; \
    if (next_##symbol == NULL) next_##symbol = (__typeof__(&symbol))dlsym(RTLD_NEXT, #symbol)

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **result) {
    NEXT(getaddrinfo);
    if (next_getaddrinfo == NULL) return EAI_SYSTEM;
    return next_getaddrinfo(local_name(node), service, hints, result);
}

struct hostent *gethostbyname(const char *name) {
    NEXT(gethostbyname);
    return next_gethostbyname ? next_gethostbyname(local_name(name)) : NULL;
}

struct hostent *gethostbyname2(const char *name, int family) {
    NEXT(gethostbyname2);
    return next_gethostbyname2 ? next_gethostbyname2(local_name(name), family) : NULL;
}

int gethostbyname_r(const char *name, struct hostent *entry, char *buffer, size_t length, struct hostent **result, int *error) {
    NEXT(gethostbyname_r);
    if (next_gethostbyname_r == NULL) { *result = NULL; return -1; }
    return next_gethostbyname_r(local_name(name), entry, buffer, length, result, error);
}

int gethostbyname2_r(const char *name, int family, struct hostent *entry, char *buffer, size_t length,
                     struct hostent **result, int *error) {
    NEXT(gethostbyname2_r);
    if (next_gethostbyname2_r == NULL) { *result = NULL; return -1; }
    return next_gethostbyname2_r(local_name(name), family, entry, buffer, length, result, error);
}
