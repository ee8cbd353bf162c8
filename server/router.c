/* The routing table: request path prefix → handler and metrics route. */
#include "server_int.h"

#include <string.h>

static bool path_is(const char *path, size_t len, const char *exact)
{
    return len == strlen(exact) && memcmp(path, exact, len) == 0;
}

static bool path_under(const char *path, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && memcmp(path, prefix, n) == 0;
}

/*
 * /api/v1/repos/{repo}/{name}/{version}/{action} (4 segments), or the version
 * itself (3 segments) with anything but GET/HEAD, belongs to the version
 * handler; shorter paths are listings.
 */
static bool version_level(const char *p, size_t len, const char *method)
{
    size_t base = strlen("/api/v1/repos/"), slashes = 0;
    for (size_t i = base; i < len; i++)
        slashes += p[i] == '/';
    if (len > base && p[len - 1] == '/')
        return false; /* a trailing slash is a listing path; meta answers it */
    return slashes >= 3 || (slashes == 2 && strcmp(method, "GET") != 0 &&
                            strcmp(method, "HEAD") != 0);
}

const struct handler *router_match(struct conn *c, int *route)
{
    const char *p = conn_path(c);
    size_t len = conn_path_len(c);
    if (path_under(p, len, "/repos/")) {
        *route = strcmp(conn_method(c), "PUT") == 0 ? ROUTE_ARTIFACT_PUT : ROUTE_ARTIFACT_GET;
        return &artifact_handler;
    }
    if (path_under(p, len, "/stages/")) {
        *route = ROUTE_STAGE;
        return &stage_handler;
    }
    if (path_under(p, len, "/api/v1/repos/") && version_level(p, len, conn_method(c))) {
        *route = ROUTE_VERSION;
        return &version_handler;
    }
    if (path_is(p, len, "/api/v1/repos") || path_under(p, len, "/api/v1/repos/")) {
        *route = ROUTE_META;
        return &meta_handler;
    }
    if (path_is(p, len, "/api/v1/deployments") || path_under(p, len, "/api/v1/deployments/")) {
        *route = ROUTE_DEPLOY;
        return &deploy_handler;
    }
    if (path_is(p, len, "/api/v1/search")) {
        *route = ROUTE_SEARCH;
        return &search_handler;
    }
    if (path_under(p, len, "/api/v1/trace/")) {
        *route = ROUTE_TRACE;
        return &trace_handler;
    }
    if (path_is(p, len, "/api/v1/tokens") || path_under(p, len, "/api/v1/tokens/")) {
        *route = ROUTE_TOKENS;
        return &tokens_handler;
    }
    if (path_is(p, len, "/api/v1/replication") || path_under(p, len, "/api/v1/replication/")) {
        *route = ROUTE_REPLICATION;
        return &replication_handler;
    }
    if (path_is(p, len, "/api/v1/audit") || path_under(p, len, "/api/v1/audit/")) {
        *route = ROUTE_AUDIT;
        return &audit_handler;
    }
    if (path_is(p, len, "/api/v1/storage")) {
        *route = ROUTE_STORAGE;
        return &storage_handler;
    }
    if (path_is(p, len, "/healthz")) {
        *route = ROUTE_HEALTH;
        return &health_handler;
    }
    if (path_is(p, len, "/readyz")) {
        *route = ROUTE_HEALTH;
        return &ready_handler;
    }
    if (path_is(p, len, "/metrics")) {
        *route = ROUTE_METRICS;
        return &metrics_handler;
    }
    *route = ROUTE_OTHER;
    return &notfound_handler;
}
