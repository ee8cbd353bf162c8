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

const struct handler *router_match(struct conn *c, int *route)
{
    const char *p = conn_path(c);
    size_t len = conn_path_len(c);
    if (path_under(p, len, "/repos/")) {
        *route = strcmp(conn_method(c), "PUT") == 0 ? ROUTE_ARTIFACT_PUT : ROUTE_ARTIFACT_GET;
        return &artifact_handler;
    }
    if (path_is(p, len, "/api/v1/repos") || path_under(p, len, "/api/v1/repos/")) {
        *route = ROUTE_META;
        return &meta_handler;
    }
    if (path_is(p, len, "/api/v1/tokens") || path_under(p, len, "/api/v1/tokens/")) {
        *route = ROUTE_TOKENS;
        return &tokens_handler;
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
