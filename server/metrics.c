/* Request metrics, counted with relaxed atomics from every worker. */
#include "server_int.h"

const double metrics_bucket_bounds[METRICS_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                       0.05,   0.1,   0.25,   0.5,   1.0,  5.0};
/* In enum route order (server_int.h). */
const char *const route_names[ROUTE_COUNT] = {
    [ROUTE_ARTIFACT_PUT] = "artifact_put", [ROUTE_ARTIFACT_GET] = "artifact_get",
    [ROUTE_META] = "metadata",             [ROUTE_STORAGE] = "storage",
    [ROUTE_TOKENS] = "tokens",             [ROUTE_AUDIT] = "audit",
    [ROUTE_HEALTH] = "health",             [ROUTE_METRICS] = "metrics",
    [ROUTE_VERSION] = "version",           [ROUTE_STAGE] = "stage",
    [ROUTE_DEPLOY] = "deployments",        [ROUTE_SEARCH] = "search",
    [ROUTE_TRACE] = "trace",               [ROUTE_REPLICATION] = "replication",
    [ROUTE_OTHER] = "other"};

void metrics_observe(struct metrics *m, int route, int status, uint64_t dur_ns)
{
    if (route < 0 || route >= ROUTE_COUNT)
        route = ROUTE_OTHER;
    if (status < 100 || status > 599)
        status = 500;
    atomic_fetch_add_explicit(&m->by_status[route][status], 1, memory_order_relaxed);
    double secs = (double)dur_ns / 1e9;
    int b = 0;
    while (b < METRICS_BUCKETS && secs > metrics_bucket_bounds[b])
        b++;
    atomic_fetch_add_explicit(&m->latency_bucket[route][b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->latency_sum_us[route], dur_ns / 1000, memory_order_relaxed);
}
