/* Layouts shared inside server/: the server, its workers, metrics, routing. */
#ifndef ARCA_SERVER_INT_H
#define ARCA_SERVER_INT_H

#include "config.h"
#include "http.h"
#include "iopool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct event;
struct evconnlistener;
struct conn;
struct ssl_st;
typedef struct repo_db repo_db;
typedef struct blob_store blob_store;
typedef struct auth auth;
typedef struct audit_signer audit_signer;

/* Metrics: a fixed set of routes, counted with relaxed atomics. */
enum route_id {
    ROUTE_ARTIFACT_PUT,
    ROUTE_ARTIFACT_GET,
    ROUTE_META,
    ROUTE_STORAGE,
    ROUTE_TOKENS,
    ROUTE_AUDIT,
    ROUTE_HEALTH,
    ROUTE_METRICS,
    ROUTE_VERSION,
    ROUTE_STAGE,
    ROUTE_DEPLOY,
    ROUTE_SEARCH,
    ROUTE_TRACE,
    ROUTE_REPLICATION,
    ROUTE_OTHER,
    ROUTE_COUNT
};
#define METRICS_BUCKETS 12

struct metrics {
    _Atomic uint64_t requests[ROUTE_COUNT][6]; /* by status class 1xx..5xx (index 1..5) */
    _Atomic uint64_t by_status[ROUTE_COUNT][600];
    _Atomic uint64_t latency_bucket[ROUTE_COUNT][METRICS_BUCKETS + 1];
    _Atomic uint64_t latency_sum_us[ROUTE_COUNT];
    _Atomic uint64_t bytes_in, bytes_out;
    _Atomic int64_t connections;
    _Atomic uint64_t connections_rejected;
    _Atomic uint64_t corrupt_detected;
    _Atomic uint64_t file_cache_hits, file_cache_misses;
};
extern const double metrics_bucket_bounds[METRICS_BUCKETS];
extern const char *const route_names[ROUTE_COUNT];
void metrics_observe(struct metrics *m, int route, int status, uint64_t dur_ns);

struct worker {
    struct server *srv;
    int id;
    pthread_t thread;
    struct event_base *base;
    struct evconnlistener *listener;      /* plain HTTP; NULL when server.listen = off */
    struct evconnlistener *tls_listener;  /* HTTPS; NULL without tls.listen */
    struct mailbox *mbox;
    struct event *stop_ev;      /* activated from the signal thread */
    struct event *grace_ev;     /* fires when the shutdown grace is over */
    struct conn *conns;         /* every open connection, for shutdown */
    bool draining;
    uint64_t next_req;
    void *scratch;              /* BLOB_BLOCK_SIZE, for verification reads */
    struct file_cache *fcache;  /* small files' bytes (filecache.h); NULL when off */
    char date[40];              /* cached HTTP Date, refreshed once a second */
    int64_t date_secs;
};

struct server {
    struct arca_config cfg;
    repo_db *db;
    blob_store *blobs;
    auth *auth;
    audit_signer *signer;       /* DATA/audit.key: signs audit checkpoints */
    struct tls_ctx *tls;        /* NULL without tls.listen */
    iopool *pool;
    struct metrics metrics;
    _Atomic bool shutting_down;
    char rid_prefix[9];         /* random per process, so request ids are unique across restarts */
    size_t nworkers;
    struct worker *workers;
    int port, tls_port;
    struct repl *repl;          /* the pullers of [peer.*]; idle without peers */
};

/* Routing: picks the handler for a request; never NULL (a 404/405 handler). */
const struct handler *router_match(struct conn *c, int *route_id);

/* Handlers, by area. */
extern const struct handler artifact_handler;
extern const struct handler meta_handler;
extern const struct handler version_handler;
extern const struct handler stage_handler;
extern const struct handler deploy_handler;
extern const struct handler search_handler;
extern const struct handler trace_handler;
/* A version's state as the API shows it (h_version.c). */
struct version_state;
json_t *version_state_json(repo_db *db, const char *repo, const char *name, const char *version,
                           const struct version_state *vs);
extern const struct handler storage_handler;
extern const struct handler health_handler;
extern const struct handler ready_handler;
extern const struct handler metrics_handler;
extern const struct handler tokens_handler;
extern const struct handler audit_handler;
extern const struct handler replication_handler;
extern const struct handler notfound_handler;

/*
 * h_meta.c: reads limit (1..1000, default 100) and cursor from the query;
 * answers 400 and returns -1 when bad.
 */
int page_query(struct conn *c, size_t *limit, char *cursor_out);
bool query_param(struct conn *c, const char *key, char *out, size_t cap, bool *bad);
/* A failed listing: 400 for a cursor it did not give out (ARCA_E_INVALID), else 500. */
void resp_list_error(struct conn *c, int rc, const char *what);
/* A page's "next_cursor" value: the cursor, or null on the last page. */
json_t *next_cursor_json(const char *next);
/* An ISO 8601 UTC time ("2026-11-23T10:00:00.123Z"), or null for 0. */
json_t *time_json(uint64_t ms);

/*
 * h_artifact.c: answers a GET/HEAD with a stored blob: ETag, checksums,
 * Range/If-Range/If-None-Match, block verification while sending.  A missing
 * or damaged blob is a 500 naming it (the log line names the request path).
 * created_ms 0: no Last-Modified.  resolved: X-Arca-Resolved-Version, or NULL.
 */
struct blob_digests;
void serve_blob(struct conn *c, const struct blob_digests *d, uint64_t created_ms,
                const char *content_type, const char *resolved);
/*
 * h_audit.c: GET ?after=&limit= over the event log as NDJSON (the caller
 * authorized it).  backlog: also X-Arca-Puts-After / X-Arca-Put-Bytes-After,
 * the uploads (and bytes) the log holds after `after` (for replication).
 */
void audit_list_events(struct conn *c, bool backlog);

/*
 * h_ops.c: the query parameters a route takes, checked in one place.
 * query_params() finds each of p->name[] in the query (p->val[i]: its raw,
 * undecoded value, or NULL when absent) and answers 400 naming the parameter
 * for an unknown or repeated one; false when it answered.
 */
#define QUERY_PARAMS_MAX 4
struct query_params {
    const char *name[QUERY_PARAMS_MAX];
    size_t n;
    const char *val[QUERY_PARAMS_MAX];
    size_t len[QUERY_PARAMS_MAX];
};
bool query_params(struct conn *c, struct query_params *p);
/* 400 {"error": {"code": "bad_request", "parameter": name, "message"}}. */
void resp_bad_param(struct conn *c, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Untrusted query text for a message: printable ASCII, at most 32 bytes. */
void query_shown(char *dst, size_t cap, const char *s, size_t len);

/* h_ops.c: answers 405 unless GET/HEAD; true when it answered. */
bool reject_unless_get(struct conn *c);
/* 405 with an Allow header listing allow ("GET, HEAD, PUT"). */
void resp_method_not_allowed(struct conn *c, const char *allow);

/* conn.c: the worker whose event loop serves c. */
struct worker *conn_worker(const struct conn *c);
/* conn.c: accepts a new connection on worker w; ssl (owned from here on) for HTTPS, else NULL. */
void conn_accept(struct worker *w, int fd, const char *peer, const char *peer_ip,
                 struct ssl_st *ssl);
/* conn.c: shutdown began; idle connections close, busy ones close after their answer. */
void conn_drain_all(struct worker *w);
/* The worker's next generated request id, "<process prefix>-<worker>-<hex counter>". */
void worker_request_id(struct worker *w, char *buf, size_t len);
/* conn.c: frees every connection of w (after the loop stopped; partial uploads discarded). */
void conn_free_all(struct worker *w);

/* server.c */
int server_run(const struct arca_config *cfg);

/*
 * cli_audit.c: `arcad audit SUB` (verify, with an optional saved checkpoint
 * file); returns the process exit status (0 OK, 1 problems found, 2 error).
 */
int cli_audit(const struct arca_config *cfg, const char *sub, const char *checkpoint_file);

/*
 * cli_repl.c: `arcad replication SUB` (verify): compares this centre's
 * replicated state with each [peer.NAME] (or only peer, when not NULL) over
 * HTTP and lists the divergent keys, as text or (as_json) JSON lines.
 * Returns the process exit status (0 all agree, 1 divergence, 2 error).
 */
int cli_repl(const struct arca_config *cfg, const char *sub, const char *peer, bool as_json);

#endif
