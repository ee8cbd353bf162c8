/*
 * /api/v1/audit: the tamper-evident audit log (storage/audit.h).
 *
 *   GET /api/v1/audit?after=SEQ&limit=N          stored events as NDJSON, in seq order
 *   GET /api/v1/audit/checkpoint[?size=N]        a signed checkpoint {origin, size, root, ...}
 *   GET /api/v1/audit/proof?seq=N[&size=M]       inclusion proof of event N in the tree of size M
 *   GET /api/v1/audit/consistency?first=M[&second=N]  consistency proof between two sizes
 *   GET /api/v1/audit/verify                     re-derives everything from the stored events
 *   GET /api/v1/audit/origins                    every origin's tree here and its accepted checkpoint
 *   GET /api/v1/audit/origins/checkpoints        this centre's signed origin checkpoint, then the
 *                                                latest accepted of every other origin
 *
 * Reading needs the read scope not tied to a repository (read without "@", or
 * admin): the log names every repository.  /origins/checkpoints is what a
 * replication peer fetches, so the replicate scope reads it too (and nothing
 * else here): it names no repository, only origins, sizes and roots.  verify
 * scans the whole log (O(n)) and needs admin, so that a reader cannot make
 * the server do that work; it runs on the I/O pool.  The other routes read
 * one page or O(log n) nodes (per origin) and run inline, as the metadata
 * listings do.  Every parameter is checked: an unknown, repeated or malformed
 * one is a 400 naming it; a size beyond the log is a 404.
 */
#include "arca_err.h"
#include "audit.h"
#include "auth.h"
#include "log.h"
#include "replica.h"
#include "repo.h"
#include "server_int.h"
#include "util.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIMIT_DEFAULT 100
#define LIMIT_MAX 1000
/* A page stops early past this many bytes (events are small; this bounds a page's memory). */
#define PAGE_BYTES_MAX (4u << 20)
#define PARAMS_MAX 2

/* The query parameters a route accepts, and what the request gave. */
struct params {
    const char *name[PARAMS_MAX];
    size_t n;
    bool seen[PARAMS_MAX];
    uint64_t v[PARAMS_MAX];
};

/* Parses the query into p (whole numbers only); answers 400 and returns false when bad. */
static bool parse_params(struct conn *c, struct params *p)
{
    struct query_params q = {.n = p->n};
    char shown[40];
    for (size_t k = 0; k < p->n; k++)
        q.name[k] = p->name[k];
    if (!query_params(c, &q))
        return false;
    for (size_t k = 0; k < p->n; k++) {
        const char *val = q.val[k];
        size_t vlen = q.len[k], i = 0;
        uint64_t v = 0;
        if (!val)
            continue;
        for (; i < vlen && val[i] >= '0' && val[i] <= '9' && v <= AUDIT_SIZE_MAX / 10; i++)
            v = v * 10 + (uint64_t)(val[i] - '0');
        if (vlen == 0 || i != vlen || v > AUDIT_SIZE_MAX) {
            query_shown(shown, sizeof(shown), val, vlen);
            resp_bad_param(c, p->name[k], "parameter '%s' must be a whole number from 0 to "
                           "9223372036854775807, got '%s'", p->name[k], shown);
            return false;
        }
        p->seen[k] = true;
        p->v[k] = v;
    }
    return true;
}

static int current_size(struct conn *c, uint64_t *size)
{
    int rc = audit_size(conn_server(c)->db, size);
    if (rc != 0)
        resp_error(c, 500, "internal", NULL, "cannot read the audit log's size: %s",
                   arca_strerror(rc));
    return rc;
}

static void storage_error(struct conn *c, const char *what, int rc)
{
    resp_error(c, 500, rc == ARCA_E_CORRUPT ? "corrupt_index" : "internal", NULL,
               "%s failed: %s", what, arca_strerror(rc));
}

static json_t *hex_json(const uint8_t *b)
{
    char hex[65];
    hex_encode(b, AUDIT_HASH_LEN, hex);
    return json_string(hex);
}

/* ---- GET /api/v1/audit -------------------------------------------------------------- */

struct page_buf {
    char *data;
    size_t len, cap;
    uint64_t last;
    bool full;
};

static int add_line(void *arg, uint64_t seq, const char *rec, size_t len)
{
    struct page_buf *pb = arg;
    if (pb->len + len + 1 > pb->cap) {
        size_t cap = pb->cap ? pb->cap : 16384;
        while (cap < pb->len + len + 1)
            cap *= 2;
        char *nd = realloc(pb->data, cap);
        if (!nd)
            return ARCA_E_TOOBIG;
        pb->data = nd;
        pb->cap = cap;
    }
    /* The stored bytes exactly (compact JSON has no raw newline), so a client can hash them. */
    memcpy(pb->data + pb->len, rec, len);
    pb->len += len;
    pb->data[pb->len++] = '\n';
    pb->last = seq;
    if (pb->len >= PAGE_BYTES_MAX) {
        pb->full = true;
        return 1;
    }
    return 0;
}

void audit_list_events(struct conn *c, bool backlog)
{
    struct params p = {.name = {"after", "limit"}, .n = 2};
    struct page_buf pb = {0};
    uint64_t size;
    bool more = false;
    if (!parse_params(c, &p))
        return;
    uint64_t after = p.seen[0] ? p.v[0] : 0, limit = p.seen[1] ? p.v[1] : LIMIT_DEFAULT;
    if (limit < 1 || limit > LIMIT_MAX) {
        resp_bad_param(c, "limit", "parameter 'limit' must be 1..%d, got %llu", LIMIT_MAX,
                  (unsigned long long)limit);
        return;
    }
    if (current_size(c, &size) != 0)
        return;
    int rc = audit_events(conn_server(c)->db, after, (size_t)limit, add_line, &pb, &more);
    if (rc == 1 && pb.full) {
        rc = 0;
        more = true;
    }
    if (rc != 0) {
        storage_error(c, "reading the audit log", rc);
        goto out;
    }
    uint64_t puts = 0, put_bytes = 0;
    if (backlog && (rc = repo_puts_after(conn_server(c)->db, after, &puts, &put_bytes)) != 0) {
        storage_error(c, "counting the uploads after the cursor", rc);
        goto out;
    }
    resp_start(c, 200);
    resp_header(c, "X-Audit-Size", "%llu", (unsigned long long)size);
    if (backlog) {
        resp_header(c, "X-Arca-Puts-After", "%llu", (unsigned long long)puts);
        resp_header(c, "X-Arca-Put-Bytes-After", "%llu", (unsigned long long)put_bytes);
    }
    if (more)
        resp_header(c, "X-Next-After", "%llu", (unsigned long long)pb.last);
    resp_header(c, "Cache-Control", "no-store");
    resp_finish_mem(c, "application/x-ndjson", pb.data ? pb.data : "", pb.len);
out:
    free(pb.data);
}

/* ---- GET /api/v1/audit/checkpoint ---------------------------------------------------- */

/* A size parameter against the log: 404 beyond it.  true when fine. */
static bool size_in_log(struct conn *c, const char *name, uint64_t v, uint64_t size)
{
    if (v <= size)
        return true;
    resp_error(c, 404, "not_found", json_pack("{s:s,s:I}", "parameter", name, "log_size",
                                              (json_int_t)size),
               "%s %llu is beyond the audit log, which holds %llu events", name,
               (unsigned long long)v, (unsigned long long)size);
    return false;
}

static void checkpoint(struct conn *c)
{
    struct params p = {.name = {"size"}, .n = 1};
    struct audit_checkpoint cp;
    uint64_t size;
    if (!parse_params(c, &p) || current_size(c, &size) != 0)
        return;
    if (p.seen[0] && !size_in_log(c, "size", p.v[0], size))
        return;
    int rc = audit_checkpoint_make(conn_server(c)->db, conn_server(c)->signer,
                                   p.seen[0] ? p.v[0] : size, &cp);
    if (rc != 0) {
        storage_error(c, "signing a checkpoint", rc);
        return;
    }
    resp_json(c, 200, audit_checkpoint_json(&cp));
}

/* ---- GET /api/v1/audit/proof ---------------------------------------------------------- */

static json_t *hash_list(uint8_t (*h)[AUDIT_HASH_LEN], size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, hex_json(h[i]));
    return a;
}

static void proof(struct conn *c)
{
    struct params p = {.name = {"seq", "size"}, .n = 2};
    uint8_t path[AUDIT_PROOF_MAX][AUDIT_HASH_LEN], root[AUDIT_HASH_LEN], leaf[AUDIT_HASH_LEN];
    size_t n = 0;
    uint64_t size;
    if (!parse_params(c, &p) || current_size(c, &size) != 0)
        return;
    if (!p.seen[0]) {
        resp_bad_param(c, "seq", "parameter 'seq' is required (the event's seq)");
        return;
    }
    uint64_t seq = p.v[0], tsize = p.seen[1] ? p.v[1] : size;
    if (seq == 0) {
        resp_bad_param(c, "seq", "parameter 'seq' must be 1 or more (events start at 1)");
        return;
    }
    if (p.seen[1] && tsize < seq) {
        resp_bad_param(c, "size", "size %llu does not include event %llu: give a size of at least %llu",
                  (unsigned long long)tsize, (unsigned long long)seq, (unsigned long long)seq);
        return;
    }
    if (!size_in_log(c, p.seen[1] ? "size" : "seq", p.seen[1] ? tsize : seq, size))
        return;
    repo_db *db = conn_server(c)->db;
    int rc = audit_inclusion_proof(db, seq, tsize, path, &n, root);
    if (rc == 0)
        rc = audit_leaf_hash(db, seq, leaf);
    if (rc != 0) {
        storage_error(c, "building the inclusion proof", rc);
        return;
    }
    resp_json(c, 200,
              json_pack("{s:I,s:I,s:I,s:o,s:o,s:o}", "seq", (json_int_t)seq, "leaf_index",
                        (json_int_t)(seq - 1), "tree_size", (json_int_t)tsize, "leaf_hash",
                        hex_json(leaf), "audit_path", hash_list(path, n), "root",
                        hex_json(root)));
}

/* ---- GET /api/v1/audit/consistency ------------------------------------------------------ */

static void consistency(struct conn *c)
{
    struct params p = {.name = {"first", "second"}, .n = 2};
    uint8_t prf[AUDIT_PROOF_MAX][AUDIT_HASH_LEN], r1[AUDIT_HASH_LEN], r2[AUDIT_HASH_LEN];
    size_t n = 0;
    uint64_t size;
    if (!parse_params(c, &p) || current_size(c, &size) != 0)
        return;
    if (!p.seen[0]) {
        resp_bad_param(c, "first", "parameter 'first' is required (the older tree size)");
        return;
    }
    uint64_t first = p.v[0], second = p.seen[1] ? p.v[1] : size;
    if (first == 0) {
        resp_bad_param(c, "first", "parameter 'first' must be 1 or more");
        return;
    }
    if (p.seen[1] && first > second) {
        resp_bad_param(c, "second", "second (%llu) must be at least first (%llu)",
                  (unsigned long long)second, (unsigned long long)first);
        return;
    }
    if (!size_in_log(c, p.seen[1] ? "second" : "first", p.seen[1] ? second : first, size))
        return;
    int rc = audit_consistency_proof(conn_server(c)->db, first, second, prf, &n, r1, r2);
    if (rc != 0) {
        storage_error(c, "building the consistency proof", rc);
        return;
    }
    resp_json(c, 200,
              json_pack("{s:I,s:I,s:o,s:o,s:o}", "first", (json_int_t)first, "second",
                        (json_int_t)second, "first_root", hex_json(r1), "second_root",
                        hex_json(r2), "proof", hash_list(prf, n)));
}

/* ---- GET /api/v1/audit/origins[/checkpoints] --------------------------------------------- */

static void origins(struct conn *c)
{
    struct params p = {.n = 0};
    json_t *body = NULL;
    if (!parse_params(c, &p))
        return;
    int rc = audit_origins(conn_server(c)->db, &body);
    if (rc != 0) {
        storage_error(c, "reading the origins' trees", rc);
        return;
    }
    resp_start(c, 200);
    resp_header(c, "Cache-Control", "no-store");
    resp_finish_json(c, body);
}

static void origin_checkpoints(struct conn *c)
{
    struct params p = {.n = 0};
    json_t *body = NULL;
    if (!parse_params(c, &p))
        return;
    int rc = audit_origin_checkpoints(conn_server(c)->db, conn_server(c)->signer, &body);
    if (rc != 0) {
        storage_error(c, "signing this centre's origin checkpoint", rc);
        return;
    }
    resp_start(c, 200);
    resp_header(c, "Cache-Control", "no-store");
    resp_finish_json(c, body);
}

/* ---- GET /api/v1/audit/verify (I/O pool) --------------------------------------------------- */

struct verify_req {
    struct conn *c;
    struct iojob job;
    int rc;
    struct audit_report rep;
};

static void verify_free(struct conn *c)
{
    free(conn_ctx(c));
}

static void verify_work(struct iojob *job)
{
    struct verify_req *r = (struct verify_req *)((char *)job - offsetof(struct verify_req, job));
    r->rc = audit_verify(conn_server(r->c)->db, NULL, NULL, &r->rep);
}

static void verify_done(struct iojob *job)
{
    struct verify_req *r = (struct verify_req *)((char *)job - offsetof(struct verify_req, job));
    struct conn *c = r->c;
    if (!conn_async_end(c) || conn_responded(c))
        return;
    if (r->rc != 0) {
        storage_error(c, "verifying the audit log", r->rc);
        return;
    }
    if (!r->rep.ok)
        LOG_W("req %s: audit verify: %llu problem(s); first: event %llu %s: %s",
              conn_request_id(c), (unsigned long long)r->rep.problem_count,
              (unsigned long long)r->rep.problems[0].seq, r->rep.problems[0].kind,
              r->rep.problems[0].message);
    resp_start(c, 200);
    resp_header(c, "Cache-Control", "no-store");
    resp_finish_json(c, audit_report_json(&r->rep, NULL));
}

static void verify(struct conn *c)
{
    struct params p = {.n = 0};
    if (!conn_authorize(c, "admin", NULL) || !parse_params(c, &p))
        return;
    struct verify_req *r = calloc(1, sizeof(*r));
    if (!r) {
        resp_error(c, 500, "internal", NULL, "out of memory");
        return;
    }
    r->c = c;
    conn_set_ctx(c, r);
    r->job = (struct iojob){.work = verify_work, .done = verify_done, .mbox = conn_mailbox(c)};
    conn_async_begin(c);
    iopool_submit(conn_server(c)->pool, &r->job);
}

/* ---- routing ------------------------------------------------------------------------------ */

static void audit_headers(struct conn *c)
{
    static const char base[] = "/api/v1/audit";
    const char *sub = conn_path(c) + sizeof(base) - 1;
    size_t len = conn_path_len(c) - (sizeof(base) - 1);
    if (reject_unless_get(c))
        return;
    if (len == 20 && memcmp(sub, "/origins/checkpoints", 20) == 0) {
        /* A peer's replicate credential, or a reader's. */
        if (auth_allows(conn_server(c)->auth, conn_principal(c), "replicate", NULL) ||
            conn_authorize(c, "read", NULL))
            origin_checkpoints(c);
        return;
    }
    if (!conn_authorize(c, "read", NULL))
        return;
    if (len == 0)
        audit_list_events(c, false);
    else if (len == 11 && memcmp(sub, "/checkpoint", 11) == 0)
        checkpoint(c);
    else if (len == 6 && memcmp(sub, "/proof", 6) == 0)
        proof(c);
    else if (len == 12 && memcmp(sub, "/consistency", 12) == 0)
        consistency(c);
    else if (len == 7 && memcmp(sub, "/verify", 7) == 0)
        verify(c);
    else if (len == 8 && memcmp(sub, "/origins", 8) == 0)
        origins(c);
    else
        resp_error(c, 404, "not_found", NULL, "no such audit endpoint (/api/v1/audit, "
                   "/checkpoint, /proof, /consistency, /verify, /origins, "
                   "/origins/checkpoints)");
}

const struct handler audit_handler = {
    .route = "audit",
    .on_headers = audit_headers,
    .on_free = verify_free,
};
