/*
 * /api/v1/replication: what peers pull, and how the pulling goes.
 *
 *   GET /api/v1/replication                     this centre's pullers, per peer (read scope)
 *   GET /api/v1/replication/events?after=&limit= the event log as NDJSON (replicate scope)
 *   GET|HEAD /api/v1/replication/blobs/SHA256   a blob by its SHA-256, Range-able (replicate)
 *   GET /api/v1/replication/digest              xxh3 of the replicated state (replicate)
 *   POST /api/v1/replication/repair?peer=NAME[&deep=true]  repair this centre from a peer (admin)
 *
 * The events page is the audit log's (h_audit.c): the stored records as they
 * are, with X-Audit-Size (the log's size) and X-Next-After when more follow.
 * A peer's credential holds the replicate scope, which grants these routes and
 * nothing else; admin implies it.
 */
#include "arca_err.h"
#include "blob.h"
#include "log.h"
#include "repl.h"
#include "replica.h"
#include "repo.h"
#include "server_int.h"
#include "util.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char base[] = "/api/v1/replication";

/* ---- GET /api/v1/replication -------------------------------------------------------------- */

static json_t *repair_json(const struct repl_repair_status *r)
{
    if (!r->requested && !r->running && !r->started_ms)
        return json_null();
    return json_pack("{s:s,s:b,s:o,s:o,s:I,s:I,s:I,s:I}", "state",
                     r->requested ? "queued" : r->running ? "running" : "done", "deep", r->deep,
                     "started", time_json(r->started_ms), "finished", time_json(r->finished_ms),
                     "blobs_checked", (json_int_t)r->blobs_checked, "blobs_bad",
                     (json_int_t)r->blobs_bad, "blobs_refetched", (json_int_t)r->blobs_refetched,
                     "blobs_failed", (json_int_t)r->blobs_failed);
}

static json_t *peer_json(const struct repl_peer_status *s)
{
    json_t *last = s->last_origin_seq
                       ? json_pack("{s:s,s:I,s:I}", "origin", s->last_origin, "origin_seq",
                                   (json_int_t)s->last_origin_seq, "hlc", (json_int_t)s->last_hlc)
                       : json_null();
    uint64_t behind = s->head > s->cursor ? s->head - s->cursor : 0;
    return json_pack("{s:s,s:s,s:b,s:I,s:I,s:I,s:o,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:o,s:I,"
                     "s:o,s:o,s:o}",
                     "name", s->name, "url", s->url, "connected", s->connected, "cursor",
                     (json_int_t)s->cursor, "peer_log_size", (json_int_t)s->head,
                     "events_behind", (json_int_t)behind, "last_applied", last,
                     "events_applied", (json_int_t)s->events_applied, "events_seen",
                     (json_int_t)s->events_seen, "blobs_fetched", (json_int_t)s->blobs_fetched,
                     "bytes_fetched", (json_int_t)s->bytes_fetched, "bytes_resumed",
                     (json_int_t)s->bytes_resumed, "blobs_behind", (json_int_t)s->blobs_behind,
                     "bytes_behind", (json_int_t)s->bytes_behind, "lag_seconds", s->lag_seconds,
                     "last_contact", time_json(s->last_contact_ms), "errors",
                     (json_int_t)s->errors, "last_error",
                     s->last_error[0] ? json_string(s->last_error) : json_null(),
                     "last_error_at", time_json(s->last_error_ms), "repair",
                     repair_json(&s->repair));
}

static void status(struct conn *c)
{
    struct server *srv = conn_server(c);
    struct repl_peer_status st[CONFIG_PEERS_MAX];
    if (!conn_authorize(c, "read", NULL))
        return;
    if (conn_query(c) && *conn_query(c)) {
        resp_error(c, 400, "bad_request", NULL, "/api/v1/replication takes no parameters");
        return;
    }
    size_t n = repl_status(srv->repl, st, CONFIG_PEERS_MAX);
    json_t *peers = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(peers, peer_json(&st[i]));
    resp_start(c, 200);
    resp_header(c, "Cache-Control", "no-store");
    resp_finish_json(c, json_pack("{s:s,s:i,s:o}", "centre", srv->cfg.centre_id, "protocol",
                                  repl_protocol_version(), "peers", peers));
}

/* ---- GET /api/v1/replication/blobs/SHA256 ------------------------------------------------- */

static void blob(struct conn *c, const char *hex, size_t len)
{
    struct server *srv = conn_server(c);
    uint8_t sha[32];
    struct blob_digests dig;
    if (len != 64 || hex_decode(hex, 64, sha, 32) != 0) {
        resp_error(c, 400, "bad_request", NULL,
                   "a blob is named by its SHA-256: 64 hexadecimal digits");
        return;
    }
    int rc = repo_get_blob(srv->db, sha, &dig, NULL);
    if (rc == ARCA_E_NOTFOUND) {
        resp_error(c, 404, "not_found", NULL, "no blob %.64s here", hex);
        return;
    }
    if (rc != 0) {
        resp_error(c, 500, "internal", NULL, "index lookup failed: %s", arca_strerror(rc));
        return;
    }
    char what[96];
    snprintf(what, sizeof(what), "replication blob %.64s", hex);
    serve_blob(c, &dig, 0, "application/octet-stream", NULL, what);
}

/* ---- GET /api/v1/replication/digest -------------------------------------------------------- */

struct digest_req {
    struct iojob job;
    struct conn *c;
    int rc;
    uint64_t digest;
};

static void digest_free(struct conn *c)
{
    free(conn_ctx(c));
}

static void digest_work(struct iojob *job)
{
    struct digest_req *r = (struct digest_req *)((char *)job - offsetof(struct digest_req, job));
    r->rc = repo_state_digest(conn_server(r->c)->db, &r->digest);
}

static void digest_done(struct iojob *job)
{
    struct digest_req *r = (struct digest_req *)((char *)job - offsetof(struct digest_req, job));
    struct conn *c = r->c;
    char hex[17];
    if (!conn_async_end(c) || conn_responded(c))
        return;
    if (r->rc != 0) {
        resp_error(c, 500, "internal", NULL, "computing the state digest failed: %s",
                   arca_strerror(r->rc));
        return;
    }
    snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)r->digest);
    resp_start(c, 200);
    resp_header(c, "Cache-Control", "no-store");
    resp_finish_json(c, json_pack("{s:s,s:s}", "centre", conn_server(c)->cfg.centre_id,
                                  "state_digest", hex));
}

/* The whole replicated state is read (O(n)): on the I/O pool, never on the event loop. */
static void digest(struct conn *c)
{
    if (conn_query(c) && *conn_query(c)) {
        resp_error(c, 400, "bad_request", NULL, "/digest takes no parameters");
        return;
    }
    struct digest_req *r = calloc(1, sizeof(*r));
    if (!r) {
        resp_error(c, 500, "internal", NULL, "out of memory");
        return;
    }
    r->c = c;
    conn_set_ctx(c, r);
    r->job = (struct iojob){.work = digest_work, .done = digest_done, .mbox = conn_mailbox(c)};
    conn_async_begin(c);
    iopool_submit(conn_server(c)->pool, &r->job);
}

/* ---- POST /api/v1/replication/repair -------------------------------------------------------- */

static void repair(struct conn *c)
{
    struct server *srv = conn_server(c);
    char peer[CONFIG_PEER_NAME_MAX + 2] = "", deep[8] = "";
    bool bad = false, has_peer, has_deep;
    if (!conn_authorize(c, "admin", NULL))
        return;
    has_peer = query_param(c, "peer", peer, sizeof(peer), &bad);
    if (!bad)
        has_deep = query_param(c, "deep", deep, sizeof(deep), &bad);
    if (bad) {
        resp_error(c, 400, "bad_request", NULL, "repair takes peer=NAME and deep=true|false");
        return;
    }
    /* Only the two parameters. */
    const char *q = conn_query(c);
    for (const char *k = q; k && *k;) {
        if (strncmp(k, "peer=", 5) != 0 && strncmp(k, "deep=", 5) != 0) {
            resp_error(c, 400, "bad_request", NULL, "unknown parameter in '%.60s' (peer, deep)", k);
            return;
        }
        k = strchr(k, '&');
        k = k ? k + 1 : NULL;
    }
    if (!has_peer || !peer[0]) {
        resp_error(c, 400, "bad_request", NULL, "name the peer to repair from: ?peer=NAME");
        return;
    }
    if (has_deep && strcmp(deep, "true") != 0 && strcmp(deep, "false") != 0) {
        resp_error(c, 400, "bad_request", NULL, "deep is true or false, got '%s'", deep);
        return;
    }
    int rc = repl_repair_start(srv->repl, peer, has_deep && strcmp(deep, "true") == 0);
    if (rc == ARCA_E_NOTFOUND) {
        resp_error(c, 404, "not_found", NULL, "no peer '%s' in [peer.*]", peer);
        return;
    }
    if (rc == ARCA_E_EXISTS) {
        resp_error(c, 409, "repair_running", NULL,
                   "a repair from '%s' is already queued or running", peer);
        return;
    }
    LOG_I("req %s: repair from peer %s asked for by %s", conn_request_id(c), peer,
          conn_actor(c));
    resp_start(c, 202);
    resp_header(c, "Location", "/api/v1/replication");
    resp_finish_json(c, json_pack("{s:s,s:s,s:s}", "peer", peer, "state", "queued", "status",
                                  "/api/v1/replication"));
}

/* ---- routing ------------------------------------------------------------------------------ */

static bool sub_is(const char *sub, size_t len, const char *name)
{
    return len == strlen(name) && memcmp(sub, name, len) == 0;
}

static void repl_headers(struct conn *c)
{
    const char *sub = conn_path(c) + sizeof(base) - 1;
    size_t len = conn_path_len(c) - (sizeof(base) - 1);
    if (sub_is(sub, len, "/repair")) {
        if (strcmp(conn_method(c), "POST") != 0)
            resp_method_not_allowed(c, "POST");
        else
            repair(c);
        return;
    }
    if (reject_unless_get(c))
        return;
    if (len == 0) {
        status(c);
        return;
    }
    if (!conn_authorize(c, "replicate", NULL))
        return;
    if (sub_is(sub, len, "/events"))
        audit_list_events(c);
    else if (len > 7 && memcmp(sub, "/blobs/", 7) == 0)
        blob(c, sub + 7, len - 7);
    else if (sub_is(sub, len, "/digest"))
        digest(c);
    else
        resp_error(c, 404, "not_found", NULL, "no such replication endpoint (/api/v1/replication, "
                   "/events, /blobs/SHA256, /digest, /repair)");
}

const struct handler replication_handler = {
    .route = "replication",
    .on_headers = repl_headers,
    .on_free = digest_free,
};
