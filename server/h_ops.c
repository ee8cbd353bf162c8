/* Operational endpoints: /healthz, /readyz, /metrics, /api/v1/storage, and the 404 fallback. */
#include "arca_err.h"
#include "auth.h"
#include "repo.h"
#include "repl.h"
#include "server_int.h"

#include <event2/buffer.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void resp_method_not_allowed(struct conn *c, const char *allow)
{
    resp_start(c, 405);
    resp_header(c, "Allow", "%s", allow);
    resp_finish_json(c, error_json("method_not_allowed", NULL, "%s is not allowed here; use %s",
                                   conn_method(c), allow));
}

void query_shown(char *dst, size_t cap, const char *s, size_t len)
{
    size_t i = 0;
    for (; i < len && i + 1 < cap && i < 32; i++)
        dst[i] = s[i] > 0x20 && s[i] < 0x7f ? s[i] : '?';
    dst[i] = '\0';
}

void resp_bad_param(struct conn *c, const char *name, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    resp_error(c, 400, "bad_request", json_pack("{s:s}", "parameter", name), "%s", msg);
}

bool query_params(struct conn *c, struct query_params *p)
{
    const char *q = conn_query(c);
    char shown[40], allowed[128] = "";
    for (size_t i = 0; i < p->n; i++) {
        p->val[i] = NULL;
        p->len[i] = 0;
        snprintf(allowed + strlen(allowed), sizeof(allowed) - strlen(allowed), "%s%s",
                 i ? ", " : "", p->name[i]);
    }
    while (q && *q) {
        const char *amp = strchr(q, '&');
        size_t len = amp ? (size_t)(amp - q) : strlen(q);
        const char *eq = memchr(q, '=', len);
        size_t klen = eq ? (size_t)(eq - q) : len;
        size_t k = 0;
        while (k < p->n && !(strlen(p->name[k]) == klen && memcmp(q, p->name[k], klen) == 0))
            k++;
        if (len == 0) {
            /* "a=1&&b=2": an empty piece says nothing. */
        } else if (k == p->n) {
            query_shown(shown, sizeof(shown), q, klen);
            resp_bad_param(c, shown, "unknown parameter '%s' (this route takes %s)", shown,
                           p->n ? allowed : "none");
            return false;
        } else if (p->val[k]) {
            resp_bad_param(c, p->name[k], "parameter '%s' is given twice", p->name[k]);
            return false;
        } else {
            p->val[k] = eq ? eq + 1 : q + len;
            p->len[k] = (size_t)(q + len - p->val[k]);
        }
        q = amp ? amp + 1 : q + len;
    }
    return true;
}

/* Answers 405 unless the method is GET or HEAD; returns true when it answered. */
bool reject_unless_get(struct conn *c)
{
    const char *m = conn_method(c);
    if (strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0)
        return false;
    resp_method_not_allowed(c, "GET, HEAD");
    return true;
}

static void health(struct conn *c)
{
    if (reject_unless_get(c))
        return;
    resp_json(c, 200, json_pack("{s:s}", "status", "ok"));
}

static void ready(struct conn *c)
{
    if (reject_unless_get(c))
        return;
    if (conn_server(c)->shutting_down)
        resp_error(c, 503, "unavailable", NULL, "the server is shutting down");
    else
        resp_json(c, 200, json_pack("{s:s}", "status", "ready"));
}

static void storage(struct conn *c)
{
    if (reject_unless_get(c))
        return;
    if (!conn_principal(c)->authenticated) {
        resp_error(c, 401, "unauthorized", NULL, "storage statistics need a credential");
        return;
    }
    struct repo_stats st;
    int rc = repo_get_stats(conn_server(c)->db, &st);
    if (rc != 0) {
        resp_error(c, 500, "internal", NULL, "cannot read storage statistics: %s",
                   arca_strerror(rc));
        return;
    }
    double ratio = st.stored_bytes ? (double)st.logical_bytes / (double)st.stored_bytes : 1.0;
    resp_json(c, 200,
              json_pack("{s:I,s:I,s:I,s:I,s:f,s:I}", "blob_count", (json_int_t)st.blob_count,
                        "stored_bytes", (json_int_t)st.stored_bytes, "artifact_count",
                        (json_int_t)st.artifact_count, "logical_bytes",
                        (json_int_t)st.logical_bytes, "dedup_ratio", ratio, "event_count",
                        (json_int_t)st.event_count));
}

/* The pullers' status per peer (GET /api/v1/replication), as gauges and counters. */
static void replication_metrics(struct server *srv, struct evbuffer *b)
{
    static const struct {
        const char *name, *type, *help;
    } g[] = {
        {"arca_replication_connected", "gauge", "1 when the last request to the peer succeeded."},
        {"arca_replication_events_behind", "gauge", "Events in the peer's log not yet taken in."},
        {"arca_replication_blobs_behind", "gauge", "Blobs of the page being applied still to fetch."},
        {"arca_replication_bytes_behind", "gauge", "Bytes of those blobs still to fetch."},
        {"arca_replication_lag_seconds", "gauge", "Age (HLC) of the oldest event not yet applied."},
        {"arca_replication_events_applied_total", "counter", "Peer events new here (this run)."},
        {"arca_replication_blob_bytes_fetched_total", "counter", "Blob bytes fetched (this run)."},
        {"arca_replication_errors_total", "counter", "Failures recorded (this run)."},
    };
    struct repl_peer_status st[CONFIG_PEERS_MAX];
    size_t n = repl_status(srv->repl, st, CONFIG_PEERS_MAX);
    for (size_t k = 0; k < sizeof(g) / sizeof(g[0]) && n > 0; k++) {
        evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", g[k].name, g[k].help, g[k].name,
                            g[k].type);
        for (size_t i = 0; i < n; i++) {
            const struct repl_peer_status *s = &st[i];
            double v = 0;
            switch (k) {
            case 0: v = s->connected; break;
            case 1: v = (double)(s->head > s->cursor ? s->head - s->cursor : 0); break;
            case 2: v = (double)s->blobs_behind; break;
            case 3: v = (double)s->bytes_behind; break;
            case 4: v = s->lag_seconds; break;
            case 5: v = (double)s->events_applied; break;
            case 6: v = (double)s->bytes_fetched; break;
            default: v = (double)s->errors; break;
            }
            evbuffer_add_printf(b, "%s{peer=\"%s\"} %.17g\n", g[k].name, s->name, v);
        }
    }
}

static void metrics(struct conn *c)
{
    if (reject_unless_get(c))
        return;
    struct server *srv = conn_server(c);
    struct metrics *m = &srv->metrics;
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        resp_error(c, 500, "internal", NULL, "out of memory");
        return;
    }
    evbuffer_add_printf(b, "# HELP arca_http_requests_total HTTP requests answered.\n"
                           "# TYPE arca_http_requests_total counter\n");
    for (int r = 0; r < ROUTE_COUNT; r++)
        for (int s = 100; s < 600; s++) {
            uint64_t v = atomic_load_explicit(&m->by_status[r][s], memory_order_relaxed);
            if (v)
                evbuffer_add_printf(b, "arca_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
                                    route_names[r], s, (unsigned long long)v);
        }
    evbuffer_add_printf(b, "# HELP arca_http_request_duration_seconds Time from first byte to answer sent.\n"
                           "# TYPE arca_http_request_duration_seconds histogram\n");
    for (int r = 0; r < ROUTE_COUNT; r++) {
        uint64_t cum = 0;
        for (int k = 0; k <= METRICS_BUCKETS; k++) {
            cum += atomic_load_explicit(&m->latency_bucket[r][k], memory_order_relaxed);
            if (k < METRICS_BUCKETS)
                evbuffer_add_printf(b, "arca_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
                                    route_names[r], metrics_bucket_bounds[k], (unsigned long long)cum);
            else
                evbuffer_add_printf(b, "arca_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n",
                                    route_names[r], (unsigned long long)cum);
        }
        evbuffer_add_printf(b, "arca_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n",
                            route_names[r],
                            (double)atomic_load(&m->latency_sum_us[r]) / 1e6);
        evbuffer_add_printf(b, "arca_http_request_duration_seconds_count{route=\"%s\"} %llu\n",
                            route_names[r], (unsigned long long)cum);
    }
    struct repo_stats st = {0};
    repo_get_stats(srv->db, &st);
    evbuffer_add_printf(b,
                        "# HELP arca_http_bytes_received_total Request body bytes received (decoded: chunk framing and headers are not counted).\n"
                        "# TYPE arca_http_bytes_received_total counter\narca_http_bytes_received_total %llu\n"
                        "# HELP arca_http_bytes_sent_total Response body bytes sent (headers are not counted).\n"
                        "# TYPE arca_http_bytes_sent_total counter\narca_http_bytes_sent_total %llu\n"
                        "# HELP arca_http_connections Client connections open now.\n"
                        "# TYPE arca_http_connections gauge\narca_http_connections %lld\n"
                        "# HELP arca_http_connections_rejected_total Connections answered 503 because the connection cap was reached.\n"
                        "# TYPE arca_http_connections_rejected_total counter\narca_http_connections_rejected_total %llu\n"
                        "# HELP arca_blob_corrupt_detected_total Downloads that found a blob missing, the wrong size or failing its block checksums.\n"
                        "# TYPE arca_blob_corrupt_detected_total counter\narca_blob_corrupt_detected_total %llu\n"
                        "# HELP arca_file_cache_hits_total Small-file GETs answered from memory.\n"
                        "# TYPE arca_file_cache_hits_total counter\narca_file_cache_hits_total %llu\n"
                        "# HELP arca_file_cache_misses_total Small-file GETs read from disk.\n"
                        "# TYPE arca_file_cache_misses_total counter\narca_file_cache_misses_total %llu\n"
                        "# HELP arca_blob_count Distinct blobs stored (a deleted version's stay: no garbage collection yet).\n"
                        "# TYPE arca_blob_count gauge\narca_blob_count %llu\n"
                        "# HELP arca_blob_stored_bytes Bytes of those blobs (each stored once).\n"
                        "# TYPE arca_blob_stored_bytes gauge\narca_blob_stored_bytes %llu\n"
                        "# HELP arca_artifact_count Files (coordinates) the index holds.\n"
                        "# TYPE arca_artifact_count gauge\narca_artifact_count %llu\n"
                        "# HELP arca_logical_bytes Bytes of all files, counting shared content once per coordinate.\n"
                        "# TYPE arca_logical_bytes gauge\narca_logical_bytes %llu\n"
                        "# HELP arca_event_count Events in this centre's log.\n"
                        "# TYPE arca_event_count gauge\narca_event_count %llu\n",
                        (unsigned long long)atomic_load(&m->bytes_in),
                        (unsigned long long)atomic_load(&m->bytes_out),
                        (long long)atomic_load(&m->connections),
                        (unsigned long long)atomic_load(&m->connections_rejected),
                        (unsigned long long)atomic_load(&m->corrupt_detected),
                        (unsigned long long)atomic_load(&m->file_cache_hits),
                        (unsigned long long)atomic_load(&m->file_cache_misses),
                        (unsigned long long)st.blob_count, (unsigned long long)st.stored_bytes,
                        (unsigned long long)st.artifact_count, (unsigned long long)st.logical_bytes,
                        (unsigned long long)st.event_count);
    replication_metrics(srv, b);
    size_t len = evbuffer_get_length(b);
    resp_start(c, 200);
    resp_finish_mem(c, "text/plain; version=0.0.4", evbuffer_pullup(b, -1), len);
    evbuffer_free(b);
}

static void notfound(struct conn *c)
{
    if (!conn_principal(c)->authenticated) {
        /* Without a credential, nothing is said about what exists. */
        resp_error(c, 401, "unauthorized", NULL, "this request needs a credential");
        return;
    }
    resp_error(c, 404, "not_found", NULL, "no route for %s %s", conn_method(c), conn_path(c));
}

const struct handler health_handler = {.route = "health", .on_headers = health};
const struct handler ready_handler = {.route = "health", .on_headers = ready};
const struct handler storage_handler = {.route = "storage", .on_headers = storage};
const struct handler metrics_handler = {.route = "metrics", .on_headers = metrics};
const struct handler notfound_handler = {.route = "other", .on_headers = notfound};
