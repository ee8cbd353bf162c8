/*
 * /api/v1/replication: what peers pull, and how the pulling goes.
 *
 *   GET /api/v1/replication                     this centre's pullers, per peer (read scope)
 *   GET /api/v1/replication/events?after=&limit= the event log as NDJSON (replicate scope)
 *   GET|HEAD /api/v1/replication/blobs/SHA256   a blob by its SHA-256, Range-able (replicate)
 *   GET /api/v1/replication/digest              xxh3 of the replicated state, per part (replicate)
 *   GET /api/v1/replication/digest?part=&prefix= a key range's digest: buckets or keys (replicate)
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
                     "s:I,s:I,s:o,s:o,s:o}",
                     "name", s->name, "url", s->url, "connected", s->connected, "cursor",
                     (json_int_t)s->cursor, "peer_log_size", (json_int_t)s->head,
                     "events_behind", (json_int_t)behind, "last_applied", last,
                     "events_applied", (json_int_t)s->events_applied, "events_seen",
                     (json_int_t)s->events_seen, "blobs_fetched", (json_int_t)s->blobs_fetched,
                     "bytes_fetched", (json_int_t)s->bytes_fetched, "bytes_resumed",
                     (json_int_t)s->bytes_resumed, "blobs_behind", (json_int_t)s->blobs_behind,
                     "bytes_behind", (json_int_t)s->bytes_behind, "lag_seconds", s->lag_seconds,
                     "last_contact", time_json(s->last_contact_ms), "checkpoints_accepted",
                     (json_int_t)s->checkpoints_accepted, "checkpoint_conflicts",
                     (json_int_t)s->checkpoint_conflicts, "errors", (json_int_t)s->errors,
                     "last_error",
                     s->last_error[0] ? json_string(s->last_error) : json_null(),
                     "last_error_at", time_json(s->last_error_ms), "repair",
                     repair_json(&s->repair));
}

static void status(struct conn *c)
{
    struct server *srv = conn_server(c);
    struct repl_peer_status st[CONFIG_PEERS_MAX];
    struct query_params q = {.n = 0};
    if (!conn_authorize(c, "read", NULL) || !query_params(c, &q))
        return;
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
    serve_blob(c, &dig, 0, "application/octet-stream", NULL);
}

/* ---- GET /api/v1/replication/digest -------------------------------------------------------- */

/*
 *   (no parameters)         {centre, state_digest, parts: [{part, count, digest}]}
 *   ?part=NAME[&prefix=HEX] {centre, part, prefix, count, digest,
 *                            keys: [{key, digest}]}                 (at most 64 keys)
 *                         or buckets: [{byte, count, digest}], exact  (more)
 * Digests are 16 hex digits, keys and prefixes hex (see storage/replica.h).
 */
struct digest_req {
    struct iojob job;
    struct conn *c;
    int rc;
    uint64_t digest;
    struct repo_part_digest parts[REPO_DIGEST_PARTS];
    const char *part; /* NULL: the whole state */
    size_t plen;
    uint8_t prefix[REPO_RANGE_PREFIX_MAX];
    struct repo_range range;
};

static void digest_free(struct conn *c)
{
    struct digest_req *r = conn_ctx(c);
    if (r)
        repo_range_cleanup(&r->range);
    free(r);
}

static void digest_work(struct iojob *job)
{
    struct digest_req *r = (struct digest_req *)((char *)job - offsetof(struct digest_req, job));
    repo_db *db = conn_server(r->c)->db;
    if (r->part)
        r->rc = repo_range_digest(db, r->part, r->prefix, r->plen, &r->range);
    else
        r->rc = repo_state_digest_parts(db, &r->digest, r->parts);
}

static json_t *hex64_json(uint64_t v)
{
    char hex[17];
    snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)v);
    return json_string(hex);
}

static json_t *hex_bytes_json(const void *b, size_t len)
{
    char *hex = malloc(2 * len + 1);
    json_t *j;
    if (!hex)
        return NULL;
    hex_encode(b, len, hex);
    j = json_string(hex);
    free(hex);
    return j;
}

static json_t *range_json(const struct digest_req *r)
{
    const struct repo_range *g = &r->range;
    json_t *o = json_pack("{s:s,s:s,s:o,s:I,s:o}", "centre", conn_server(r->c)->cfg.centre_id,
                          "part", r->part, "prefix", hex_bytes_json(r->prefix, r->plen),
                          "count", (json_int_t)g->count, "digest", hex64_json(g->digest));
    json_t *list = json_array();
    if (g->leaf) {
        for (size_t i = 0; i < g->nkeys; i++)
            json_array_append_new(list, json_pack("{s:o,s:o}", "key",
                                                  hex_bytes_json(g->keys[i].key, g->keys[i].len),
                                                  "digest", hex64_json(g->keys[i].digest)));
        json_object_set_new(o, "keys", list);
    } else {
        for (size_t i = 0; i < g->nbuckets; i++)
            json_array_append_new(list, json_pack("{s:o,s:I,s:o}", "byte",
                                                  hex_bytes_json(&g->buckets[i].byte, 1), "count",
                                                  (json_int_t)g->buckets[i].count, "digest",
                                                  hex64_json(g->buckets[i].digest)));
        json_object_set_new(o, "buckets", list);
        json_object_set_new(o, "exact", g->has_exact ? hex64_json(g->exact_digest) : json_null());
    }
    return o;
}

static void digest_done(struct iojob *job)
{
    struct digest_req *r = (struct digest_req *)((char *)job - offsetof(struct digest_req, job));
    struct conn *c = r->c;
    json_t *body;
    if (!conn_async_end(c) || conn_responded(c))
        return;
    if (r->rc != 0) {
        resp_error(c, 500, "internal", NULL, "computing the %s digest failed: %s",
                   r->part ? "range" : "state", arca_strerror(r->rc));
        return;
    }
    if (r->part) {
        body = range_json(r);
    } else {
        json_t *parts = json_array();
        for (size_t i = 0; i < REPO_DIGEST_PARTS; i++)
            json_array_append_new(parts, json_pack("{s:s,s:I,s:o}", "part", r->parts[i].part,
                                                   "count", (json_int_t)r->parts[i].count,
                                                   "digest", hex64_json(r->parts[i].digest)));
        body = json_pack("{s:s,s:o,s:o}", "centre", conn_server(c)->cfg.centre_id,
                         "state_digest", hex64_json(r->digest), "parts", parts);
    }
    if (!body) {
        resp_error(c, 500, "internal", NULL, "out of memory");
        return;
    }
    resp_start(c, 200);
    resp_header(c, "Cache-Control", "no-store");
    resp_finish_json(c, body);
}

/* Reads ?part=&prefix= into r; answers 400 naming the parameter and returns false when bad. */
static bool digest_params(struct conn *c, struct digest_req *r)
{
    struct query_params q = {.name = {"part", "prefix"}, .n = 2};
    char shown[40], names[256] = "";
    if (!query_params(c, &q))
        return false;
    const char *part = q.val[0], *prefix = q.val[1];
    size_t part_len = q.len[0], prefix_len = q.len[1];
    if (prefix && !part) {
        resp_bad_param(c, "prefix", "parameter 'prefix' needs 'part'");
        return false;
    }
    if (!part)
        return true;
    for (size_t i = 0; repo_digest_part_name(i); i++) {
        const char *n = repo_digest_part_name(i);
        if (strlen(n) == part_len && memcmp(n, part, part_len) == 0)
            r->part = n;
        snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s%s", i ? ", " : "", n);
    }
    if (!r->part) {
        query_shown(shown, sizeof(shown), part, part_len);
        resp_bad_param(c, "part", "unknown part '%s' (one of %s)", shown, names);
        return false;
    }
    if (prefix && (prefix_len % 2 != 0 || prefix_len > 2 * REPO_RANGE_PREFIX_MAX ||
                   hex_decode(prefix, prefix_len, r->prefix, prefix_len / 2) != 0)) {
        query_shown(shown, sizeof(shown), prefix, prefix_len);
        resp_bad_param(c, "prefix", "parameter 'prefix' takes a key prefix as an even number of "
                  "hexadecimal digits, at most %d, got '%s'", 2 * REPO_RANGE_PREFIX_MAX, shown);
        return false;
    }
    r->plen = prefix ? prefix_len / 2 : 0;
    return true;
}

/* A part or range is read in full (O(n)): on the I/O pool, never on the event loop. */
static void digest(struct conn *c)
{
    struct digest_req *r = calloc(1, sizeof(*r));
    if (!r) {
        resp_error(c, 500, "internal", NULL, "out of memory");
        return;
    }
    if (!digest_params(c, r)) {
        free(r);
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
    struct query_params q = {.name = {"peer", "deep"}, .n = 2};
    char peer[CONFIG_PEER_NAME_MAX + 1], shown[40];
    if (!conn_authorize(c, "admin", NULL) || !query_params(c, &q))
        return;
    /* Peer names are plain (letters, digits, '-', '_'): no decoding needed to compare. */
    if (!q.val[0] || q.len[0] == 0 || q.len[0] > CONFIG_PEER_NAME_MAX) {
        resp_bad_param(c, "peer", "name the peer to repair from: ?peer=NAME (a [peer.NAME])");
        return;
    }
    memcpy(peer, q.val[0], q.len[0]);
    peer[q.len[0]] = '\0';
    bool deep = q.val[1] && q.len[1] == 4 && memcmp(q.val[1], "true", 4) == 0;
    if (q.val[1] && !deep && !(q.len[1] == 5 && memcmp(q.val[1], "false", 5) == 0)) {
        query_shown(shown, sizeof(shown), q.val[1], q.len[1]);
        resp_bad_param(c, "deep", "deep is true or false, got '%s'", shown);
        return;
    }
    int rc = repl_repair_start(srv->repl, peer, deep);
    if (rc == ARCA_E_NOTFOUND) {
        query_shown(shown, sizeof(shown), peer, strlen(peer));
        resp_error(c, 404, "not_found", NULL, "no peer '%s' in [peer.*]", shown);
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
        audit_list_events(c, true);
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
