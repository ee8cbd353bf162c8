/*
 * /repos/{repo}/{name}/{version}/{path...}: upload (PUT) and download (GET, HEAD).
 *
 * An upload streams through a ring of up to NCHUNKS chunk buffers.  The
 * event loop copies body bytes into the newest; each sealed chunk then goes
 * through three lanes of I/O-pool jobs: the hash lane (SHA-256, SHA-1, block
 * sums), the MD5 lane (the slowest hash, so it runs beside the others) and the
 * store lane (the file write, which waits for the disk: blob.c writes large
 * blobs with O_DIRECT).  Each lane takes chunks in order, one job at a time,
 * but the lanes are independent, so on two cores both hashes run at once while
 * the disk writes.  A chunk's buffer is reused once every lane is past it;
 * when every buffer is in use the
 * connection stops reading: that backpressure bounds memory per upload to
 * NCHUNKS * CHUNK_ROOM.
 * The final fsync, rename and index commit also run in the pool, so no event
 * loop waits for a disk.
 */
#include "arca_err.h"
#include "blob.h"
#include "filecache.h"
#include "httputil.h"
#include "log.h"
#include "lifecycle.h"
#include "repo.h"
#include "server_int.h"
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (512u * 1024)
#define CHUNK_ROOM (CHUNK + 256u * 1024) /* a parser feed may overshoot CHUNK by up to FEED_MAX */
#define NCHUNKS 8 /* a window of 4 MiB: the lanes drift apart by up to that much */
#define MAX_SEGMENTS (3 + COORD_PATH_DEPTH + 1)

/* ---- coordinates from the URL ---- */

/*
 * Parses /repos/{repo}/{name}/{version}/{path...} into c.  Returns 0, or
 * answers 400 itself and returns -1.
 */
static int parse_coord(struct conn *cn, size_t skip, struct coord *c)
{
    const char *path = conn_path(cn) + skip;
    size_t len = conn_path_len(cn) - skip;
    char *buf = malloc(len + MAX_SEGMENTS + 1);
    char *segs[MAX_SEGMENTS];
    size_t lens[MAX_SEGMENTS];
    const char *why = NULL;
    int rc = -1;
    if (!buf) {
        resp_error(cn, 500, "internal", NULL, "out of memory");
        return -1;
    }
    int n = path_split(path, len, buf, segs, lens, MAX_SEGMENTS);
    if (n == ARCA_E_INVALID) {
        why = "malformed percent-escape";
        goto out;
    }
    if (n == ARCA_E_TOOBIG) {
        why = "too many path segments";
        goto out;
    }
    if (n < 4) {
        why = "expected /repos/{repo}/{name}/{version}/{path}";
        goto out;
    }
    for (int i = 0; i < n; i++) {
        if (strlen(segs[i]) != lens[i]) {
            why = "a segment contains a NUL byte";
            goto out;
        }
        if (memchr(segs[i], '/', lens[i])) {
            why = "a segment contains an encoded '/'";
            goto out;
        }
    }
    /* Re-join the file path segments, each of which coord_set checks again. */
    for (int i = 4; i < n; i++)
        segs[i][-1] = '/'; /* the NUL between path segments becomes the separator again */
    if (coord_set(c, segs[0], segs[1], segs[2], segs[3], &why) != 0)
        goto out;
    rc = 0;
out:
    if (rc != 0)
        resp_error(cn, 400, "invalid_path", NULL, "invalid artifact path: %s",
                   why ? why : "bad segment");
    free(buf);
    return rc;
}

/* ---- JSON ---- */

/* The artifact's download path, percent-encoded; malloc'd, NULL when out of memory. */
static char *artifact_uri(const struct coord *c)
{
    char *raw = NULL, *esc = NULL;
    if (asprintf(&raw, "/repos/%s/%s/%s/%s", c->repo, c->name, c->version, c->path) < 0)
        return NULL;
    esc = uri_escape_path(raw);
    free(raw);
    return esc;
}

json_t *artifact_to_json(const struct artifact *a)
{
    char sha256[65], sha1[41], md5[33], created[32];
    hex_encode(a->dig.sha256, 32, sha256);
    hex_encode(a->dig.sha1, 20, sha1);
    hex_encode(a->dig.md5, 16, md5);
    time_format_iso(a->created_ms, created);
    char *esc = artifact_uri(&a->coord);
    json_t *uri = esc ? json_string(esc) : NULL;
    free(esc);
    return json_pack("{s:s,s:s,s:s,s:s,s:I,s:{s:s,s:s,s:s},s:s,s:s,s:o}", "repo", a->coord.repo,
                     "name", a->coord.name, "version", a->coord.version, "path", a->coord.path,
                     "size", (json_int_t)a->dig.size, "checksums", "sha256", sha256, "sha1", sha1,
                     "md5", md5, "created", created, "created_by", a->created_by, "download_uri",
                     uri ? uri : json_null());
}

/* ---- upload ---- */

enum put_outcome {
    PUT_PENDING,
    PUT_STORED,       /* 201 */
    PUT_SAME,         /* 200: the coordinate already held these bytes */
    PUT_CONFLICT,     /* 409 */
    PUT_MISMATCH,     /* 400: a client checksum differs */
    PUT_NOT_FOUND,    /* 404: checksum deploy of unknown content */
    PUT_ERROR,        /* 500/507 */
    PUT_REFUSED,      /* 409: the version takes no new files (frozen, revoked, deleted) */
};

enum { LANE_HASH, LANE_MD5, LANE_STORE, NLANES };

struct put;

/* One lane: its job (first, so a job is its lane), the next chunk it takes. */
struct lane {
    struct iojob job;
    struct put *p;
    unsigned seq;
    bool busy;
    int err;    /* set by the lane's job, read on the event loop once it is back */
};

struct put {
    struct conn *c;
    struct coord coord;
    blob_writer *w;
    /* Chunks are numbered; chunk n lives in buf[n % NCHUNKS] (allocated on first use). */
    uint8_t *buf[NCHUNKS];
    size_t len[NCHUNKS];
    size_t cap[NCHUNKS];        /* buf[i]'s size: CHUNK_ROOM (mapped) or a short body's (malloc) */
    unsigned fill_seq;          /* the chunk the event loop fills */
    struct lane lanes[NLANES];
    bool paused;                /* reading stopped: no free buffer */
    struct iojob job_final;
    int werr;                   /* the first error (a lane's, or no memory), event loop only */
    bool body_done, deploy;

    bool want_sha256, want_sha1, want_md5;
    uint8_t exp_sha256[32], exp_sha1[20], exp_md5[16];

    /* Results of the final job. */
    enum put_outcome outcome;
    int err;
    char mismatch_alg[8];
    char expected[65], actual[65];
    struct blob_digests dig;
    struct blob_blocks blocks;
    struct artifact art;
    json_t *props;              /* X-Arca-Property headers, or NULL */
    struct op_result res;       /* why a PUT_REFUSED */
};

/*
 * Chunk buffers of a whole CHUNK_ROOM are mapped, not malloc'd, so that an
 * upload's 6 MiB go back to the system when it ends: from malloc they stayed
 * in whichever arena had them, and three 1 GiB uploads in a row grew the
 * server's RSS by 15 MiB.  A short body's one buffer comes from malloc.
 */
static uint8_t *chunk_alloc(size_t cap)
{
    if (cap < CHUNK_ROOM)
        return malloc(cap);
    void *m = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return m == MAP_FAILED ? NULL : m;
}

static void chunk_free(uint8_t *buf, size_t cap)
{
    if (!buf)
        return;
    if (cap < CHUNK_ROOM)
        free(buf);
    else
        munmap(buf, cap);
}

/* Gives chunk i its buffer if it has none.  false: no memory. */
static bool chunk_ready(struct put *p, unsigned i)
{
    if (!p->buf[i]) {
        p->cap[i] = CHUNK_ROOM;
        p->buf[i] = chunk_alloc(CHUNK_ROOM);
    }
    return p->buf[i] != NULL;
}

static void put_free(struct conn *c)
{
    struct put *p = conn_ctx(c);
    if (!p)
        return;
    blob_writer_free(p->w); /* an uncommitted temp file goes with it */
    blob_blocks_cleanup(&p->blocks);
    for (int i = 0; i < NCHUNKS; i++)
        chunk_free(p->buf[i], p->cap[i]);
    json_decref(p->props);
    op_result_clear(&p->res);
    free(p);
}

static struct put *from_job(struct iojob *job, size_t offset)
{
    return (struct put *)((char *)job - offset);
}
#define PUT_OF(job, member) from_job((job), offsetof(struct put, member))

static void lane_work(struct iojob *job)
{
    struct lane *l = (struct lane *)job;
    struct put *p = l->p;
    unsigned i = l->seq % NCHUNKS;
    int rc = 0;
    switch (l - p->lanes) {
    case LANE_HASH:
        rc = blob_writer_hash(p->w, p->buf[i], p->len[i]);
        break;
    case LANE_MD5:
        blob_writer_md5(p->w, p->buf[i], p->len[i]);
        break;
    default:
        rc = blob_writer_store(p->w, p->buf[i], p->len[i]);
        break;
    }
    if (rc != 0)
        l->err = rc;
}

static void put_finalize(struct put *p);
static void lane_done(struct iojob *job);

/* The oldest chunk a lane still needs; buffers before it are free. */
static unsigned oldest_in_use(const struct put *p)
{
    unsigned o = p->lanes[0].seq;
    for (int k = 1; k < NLANES; k++)
        if (p->lanes[k].seq < o)
            o = p->lanes[k].seq;
    return o;
}

static bool any_lane_busy(const struct put *p)
{
    for (int k = 0; k < NLANES; k++)
        if (p->lanes[k].busy)
            return true;
    return false;
}

/* Starts each idle lane on its next sealed chunk. */
static void kick_lanes(struct put *p)
{
    struct mailbox *mb = conn_mailbox(p->c);
    for (int k = 0; k < NLANES; k++) {
        struct lane *l = &p->lanes[k];
        if (l->busy || l->seq >= p->fill_seq)
            continue;
        l->busy = true;
        l->p = p;
        l->job = (struct iojob){.work = lane_work, .done = lane_done, .mbox = mb};
        conn_async_begin(p->c);
        iopool_submit(conn_server(p->c)->pool, &l->job);
    }
}

/*
 * Seals the chunk being filled and moves to the next buffer.  Returns false
 * when that buffer is still in use by a lane (or cannot be allocated): the
 * caller must stop reading.
 */
static bool seal_chunk(struct put *p)
{
    p->fill_seq++;
    kick_lanes(p);
    if (p->fill_seq - oldest_in_use(p) >= NCHUNKS)
        return false;
    unsigned i = p->fill_seq % NCHUNKS;
    if (!chunk_ready(p, i)) {
        p->werr = -ENOMEM;
        return false;
    }
    p->len[i] = 0;
    return true;
}

static bool lanes_idle_and_done(const struct put *p)
{
    return p->body_done && !any_lane_busy(p) && oldest_in_use(p) == p->fill_seq;
}

/*
 * Answers p->werr once no lane is out (a lane still holds a buffer until it
 * is back).  Body bytes not yet read are discarded and the connection closes.
 */
static void put_fail(struct put *p)
{
    struct conn *c = p->c;
    if (any_lane_busy(p) || conn_responded(c))
        return;
    int st = p->werr == -ENOSPC || p->werr == -EDQUOT ? 507 : 500;
    bool unread = !p->body_done || p->paused;
    /* No lane is out: the temp file goes before the answer, as in job_final_done. */
    blob_writer_free(p->w);
    p->w = NULL;
    if (unread)
        resp_close_after(c);
    resp_error(c, st, st == 507 ? "insufficient_storage" : "internal", NULL,
               "cannot write the upload: %s", arca_strerror(p->werr));
    p->body_done = true; /* no more lanes, no finalize */
    if (unread) {
        p->paused = false;
        conn_resume_body(c); /* last: lets the connection finish and close */
    }
}

static void lane_done(struct iojob *job)
{
    struct lane *l = (struct lane *)job;
    struct put *p = l->p;
    struct conn *c = p->c;
    l->busy = false;
    l->seq++;
    if (l->err != 0 && p->werr == 0)
        p->werr = l->err;
    if (!conn_async_end(c))
        return; /* the client went away and nothing else holds the request: p is gone */
    if (conn_responded(c))
        return; /* answered already (a protocol error or timeout); the connection is closing */
    if (p->werr) {
        put_fail(p);
        return;
    }
    if (p->body_done) {
        if (lanes_idle_and_done(p))
            put_finalize(p);
        else
            kick_lanes(p);
        return;
    }
    kick_lanes(p);
    if (p->paused && p->fill_seq - oldest_in_use(p) < NCHUNKS) {
        unsigned i = p->fill_seq % NCHUNKS;
        if (!chunk_ready(p, i)) {
            p->werr = -ENOMEM;
            put_fail(p);
            return;
        }
        p->len[i] = 0;
        p->paused = false;
        conn_resume_body(c); /* last: the connection may finish and go */
    }
}

static int put_body(struct conn *c, const char *data, size_t len)
{
    struct put *p = conn_ctx(c);
    if (p->werr)
        return 0; /* discard: the error answer is on its way */
    unsigned i = p->fill_seq % NCHUNKS;
    memcpy(p->buf[i] + p->len[i], data, len);
    p->len[i] += len;
    if (p->len[i] < CHUNK || seal_chunk(p))
        return 0;
    if (p->werr) {
        put_fail(p); /* no memory for the next buffer; the rest is read and dropped */
        return 0;
    }
    p->paused = true;
    LOG_D("req %s: upload paused: all %d chunk buffers busy", conn_request_id(c), NCHUNKS);
    return 1; /* stop reading until a lane frees a buffer */
}

static void put_complete(struct conn *c)
{
    struct put *p = conn_ctx(c);
    if (p->werr) {
        p->body_done = true; /* all of it was read (and dropped): the connection may stay */
        put_fail(p);
        return;
    }
    p->body_done = true;
    if (p->len[p->fill_seq % NCHUNKS] > 0) {
        p->fill_seq++;
        kick_lanes(p);
    }
    if (lanes_idle_and_done(p))
        put_finalize(p);
}

static bool check_digest(struct put *p, const char *alg, bool want, const uint8_t *exp,
                         const uint8_t *act, size_t n)
{
    if (!want || memcmp(exp, act, n) == 0)
        return true;
    snprintf(p->mismatch_alg, sizeof(p->mismatch_alg), "%s", alg);
    hex_encode(exp, n, p->expected);
    hex_encode(act, n, p->actual);
    return false;
}

/* Decides 200/409 against what the coordinate holds; true when it decided. */
static bool compare_existing(struct put *p, repo_db *db)
{
    int rc = repo_get_artifact(db, &p->coord, &p->art);
    if (rc == ARCA_E_NOTFOUND)
        return false;
    if (rc != 0) {
        p->outcome = PUT_ERROR;
        p->err = rc;
    } else if (memcmp(p->art.dig.sha256, p->dig.sha256, 32) == 0) {
        p->outcome = PUT_SAME;
    } else {
        p->outcome = PUT_CONFLICT;
    }
    return true;
}

static void record(struct put *p, const struct blob_blocks *blocks)
{
    struct server *srv = conn_server(p->c);
    struct actor_ctx who = {conn_actor(p->c), conn_peer(p->c), conn_request_id(p->c)};
    int created = 0;
    int rc = repo_put_artifact_ex(srv->db, &p->coord, &p->dig, blocks, p->props, &who, &p->art,
                                  &created, &p->res);
    if (rc == 0)
        p->outcome = created ? PUT_STORED : PUT_SAME;
    else if (rc == ARCA_E_CONFLICT && p->res.code[0])
        p->outcome = PUT_REFUSED;
    else if (rc == ARCA_E_CONFLICT)
        p->outcome = PUT_CONFLICT;
    else {
        p->outcome = PUT_ERROR;
        p->err = rc;
    }
}

static void job_final_work(struct iojob *job)
{
    struct put *p = PUT_OF(job, job_final);
    struct server *srv = conn_server(p->c);
    int rc;
    if ((rc = blob_writer_finish(p->w, &p->dig)) != 0) {
        p->outcome = PUT_ERROR;
        p->err = rc;
        return;
    }
    if (!check_digest(p, "sha256", p->want_sha256, p->exp_sha256, p->dig.sha256, 32) ||
        !check_digest(p, "sha1", p->want_sha1, p->exp_sha1, p->dig.sha1, 20) ||
        !check_digest(p, "md5", p->want_md5, p->exp_md5, p->dig.md5, 16)) {
        p->outcome = PUT_MISMATCH;
        return;
    }
    /* Settled before the blob is committed, so a refused upload leaves no orphan. */
    if (compare_existing(p, srv->db)) {
        /*
         * The same bytes again (a retry) still commit: the stored copy is read
         * back and, if it went bad or went missing since, replaced by this one.
         */
        if (p->outcome == PUT_SAME && (rc = blob_writer_commit(p->w)) != 0) {
            p->outcome = PUT_ERROR;
            p->err = rc;
        }
        return;
    }
    if ((rc = blob_writer_commit(p->w)) != 0) {
        p->outcome = PUT_ERROR;
        p->err = rc;
        return;
    }
    blob_writer_take_blocks(p->w, &p->blocks);
    record(p, &p->blocks);
}

static void job_deploy_work(struct iojob *job)
{
    struct put *p = PUT_OF(job, job_final);
    struct server *srv = conn_server(p->c);
    uint8_t sha256[32];
    int rc = 0;
    if (p->want_sha256)
        memcpy(sha256, p->exp_sha256, 32);
    else
        rc = repo_find_sha1(srv->db, p->exp_sha1, sha256);
    struct blob_blocks blocks = {0};
    if (rc == 0)
        rc = repo_get_blob(srv->db, sha256, &p->dig, &blocks);
    if (rc == 0) {
        /*
         * The index knows it; make sure the bytes on disk are whole before a
         * new coordinate names them (every block against its xxh3): a copy
         * that went bad gets a 404, so the client sends the body and its
         * commit replaces the bad copy.
         */
        rc = blob_scrub(srv->blobs, &p->dig, &blocks);
        if (rc != 0 && rc != -ENOMEM && rc != ARCA_E_CRYPTO) {
            /* Missing, damaged or unreadable (EIO): the body, once sent, replaces it. */
            char hex[65];
            hex_encode(sha256, 32, hex);
            LOG_W("req %s: checksum deploy: blob %s is %s on disk; asking for the body",
                  conn_request_id(p->c), hex,
                  rc == -ENOENT ? "missing" : rc == ARCA_E_CORRUPT ? "damaged"
                                                                  : arca_strerror(rc));
            if (rc != -ENOENT)
                atomic_fetch_add(&srv->metrics.corrupt_detected, 1);
            rc = ARCA_E_CORRUPT;
        }
    }
    blob_blocks_cleanup(&blocks);
    if (rc == ARCA_E_NOTFOUND || rc == -ENOENT || rc == ARCA_E_CORRUPT) {
        p->outcome = PUT_NOT_FOUND;
        return;
    }
    if (rc != 0) {
        p->outcome = PUT_ERROR;
        p->err = rc;
        return;
    }
    if (p->want_sha1 && memcmp(p->dig.sha1, p->exp_sha1, 20) != 0) {
        check_digest(p, "sha1", true, p->exp_sha1, p->dig.sha1, 20);
        p->outcome = PUT_MISMATCH;
        return;
    }
    if (p->want_md5 && memcmp(p->dig.md5, p->exp_md5, 16) != 0) {
        check_digest(p, "md5", true, p->exp_md5, p->dig.md5, 16);
        p->outcome = PUT_MISMATCH;
        return;
    }
    if (compare_existing(p, srv->db))
        return;
    record(p, NULL);
}

static void job_final_done(struct iojob *job)
{
    struct put *p = PUT_OF(job, job_final);
    struct conn *c = p->c;
    if (!conn_async_end(c))
        return;
    if (conn_responded(c))
        return;
    /*
     * Whatever the answer, the temp file goes now rather than with the
     * connection, and before the answer: a client that got "nothing stored"
     * must find no temp file either.
     */
    blob_writer_free(p->w);
    p->w = NULL;
    char stored[65];
    switch (p->outcome) {
    case PUT_STORED:
        resp_start(c, 201);
        char *loc = artifact_uri(&p->art.coord);
        if (loc)
            resp_header(c, "Location", "%s", loc);
        free(loc);
        resp_finish_json(c, artifact_to_json(&p->art));
        break;
    case PUT_SAME:
        resp_json(c, 200, artifact_to_json(&p->art));
        break;
    case PUT_CONFLICT:
        hex_encode(p->art.dig.sha256, 32, stored);
        resp_error(c, 409, "conflict", json_pack("{s:s}", "sha256", stored),
                   "%s/%s/%s/%s already holds different content (sha256 %s); artifacts are "
                   "immutable",
                   p->coord.repo, p->coord.name, p->coord.version, p->coord.path, stored);
        break;
    case PUT_REFUSED:
        resp_error(c, 409, p->res.code, NULL, "%s", p->res.message);
        break;
    case PUT_MISMATCH:
        resp_error(c, 400, "checksum_mismatch",
                   json_pack("{s:s,s:s,s:s}", "algorithm", p->mismatch_alg, "expected",
                             p->expected, "actual", p->actual),
                   "%s mismatch: the client sent %s but the body hashes to %s; nothing stored",
                   p->mismatch_alg, p->expected, p->actual);
        break;
    case PUT_NOT_FOUND:
        resp_error(c, 404, "not_found", NULL,
                   "no stored content has that checksum; send the body");
        break;
    default:
        resp_error(c, p->err == -ENOSPC ? 507 : 500,
                   p->err == -ENOSPC ? "insufficient_storage" : "internal", NULL,
                   "storing the upload failed: %s", arca_strerror(p->err));
        break;
    }
}

static void put_finalize(struct put *p)
{
    p->job_final = (struct iojob){.work = p->deploy ? job_deploy_work : job_final_work,
                                  .done = job_final_done, .mbox = conn_mailbox(p->c)};
    conn_async_begin(p->c);
    iopool_submit(conn_server(p->c)->pool, &p->job_final);
}

/* Reads one client checksum header; false (after answering 400) when malformed. */
static bool read_checksum(struct conn *c, const char *header, bool *want, uint8_t *out, size_t n)
{
    const char *v = conn_header(c, header);
    if (!v)
        return true;
    if (conn_header_count(c, header) > 1) {
        resp_error(c, 400, "bad_request", NULL, "send %s once", header);
        return false;
    }
    if (hex_decode(v, strlen(v), out, n) != 0) {
        resp_error(c, 400, "bad_request", NULL, "%s must be %zu hex digits", header, 2 * n);
        return false;
    }
    *want = true;
    return true;
}

/*
 * RFC 9530 Content-Digest, on one or more header lines: sha-256, sha (SHA-1)
 * and md5 are checked like the X-Checksum headers; other algorithms are
 * ignored.  Two values for one algorithm (in it, or against an X-Checksum
 * header) are refused before the body is read: 400 checksum_conflict.
 */
static bool read_content_digest(struct conn *c, struct put *p)
{
    static const struct {
        const char *alg, *label;
        size_t n;
        size_t want_off, exp_off;
    } algs[] = {
        {"sha-256", "sha256", 32, offsetof(struct put, want_sha256),
         offsetof(struct put, exp_sha256)},
        {"sha", "sha1", 20, offsetof(struct put, want_sha1), offsetof(struct put, exp_sha1)},
        {"md5", "md5", 16, offsetof(struct put, want_md5), offsetof(struct put, exp_md5)},
    };
    int lines = conn_header_count(c, "Content-Digest");
    for (int line = 0; line < lines; line++) {
        const char *v = conn_header_nth(c, "Content-Digest", line);
        for (size_t i = 0; v && i < 3; i++) {
            uint8_t d[32];
            char a[65], b[65];
            int rc = content_digest_get(v, algs[i].alg, d, algs[i].n);
            if (rc == ARCA_E_NOTFOUND)
                continue;
            if (rc == ARCA_E_INVALID) {
                resp_error(c, 400, "bad_request", NULL,
                           "malformed Content-Digest: each member must be ALG=:BASE64: "
                           "(sha-256 32 bytes, sha 20, md5 16)");
                return false;
            }
            bool *want = (bool *)((char *)p + algs[i].want_off);
            uint8_t *exp = (uint8_t *)p + algs[i].exp_off;
            if (rc == ARCA_E_CONFLICT || (*want && memcmp(exp, d, algs[i].n) != 0)) {
                json_t *extra = json_pack("{s:s}", "algorithm", algs[i].label);
                if (rc != ARCA_E_CONFLICT) {
                    hex_encode(exp, algs[i].n, a);
                    hex_encode(d, algs[i].n, b);
                    json_object_set_new(extra, "values", json_pack("[s,s]", a, b));
                }
                resp_error(c, 400, "checksum_conflict", extra,
                           "the request gives two different %s checksums (Content-Digest and "
                           "X-Checksum headers, or one Content-Digest algorithm twice); nothing "
                           "stored",
                           algs[i].label);
                return false;
            }
            memcpy(exp, d, algs[i].n);
            *want = true;
        }
    }
    return true;
}

/*
 * Properties set with an upload: "X-Arca-Property: key=value", repeatable.
 * The value is everything after the first '=', taken as is (trimmed).
 */
static bool read_properties(struct conn *c, struct put *p)
{
    int n = conn_header_count(c, "X-Arca-Property");
    const char *why;
    if (n == 0)
        return true;
    if (n > PROPS_PER_REQUEST) {
        resp_error(c, 400, "bad_property", NULL, "at most %d X-Arca-Property headers",
                   PROPS_PER_REQUEST);
        return false;
    }
    p->props = json_object();
    for (int i = 0; i < n; i++) {
        const char *h = conn_header_nth(c, "X-Arca-Property", i);
        const char *eq = strchr(h, '=');
        char key[PROP_KEY_MAX + 2];
        size_t kl = eq ? (size_t)(eq - h) : 0;
        while (kl > 0 && (h[kl - 1] == ' ' || h[kl - 1] == '\t'))
            kl--;
        if (!eq || kl == 0 || kl > PROP_KEY_MAX) {
            resp_error(c, 400, "bad_property", NULL,
                       "X-Arca-Property must be KEY=VALUE with a key of 1-%d characters",
                       PROP_KEY_MAX);
            return false;
        }
        memcpy(key, h, kl);
        key[kl] = '\0';
        const char *v = eq + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        if (prop_key_check(key, &why) != 0 || prop_value_check(v, strlen(v), &why) != 0) {
            resp_error(c, 400, "bad_property", NULL, "X-Arca-Property '%.64s': %s", key, why);
            return false;
        }
        if (json_object_get(p->props, key)) {
            resp_error(c, 400, "bad_property", NULL, "X-Arca-Property '%s' is given twice", key);
            return false;
        }
        json_object_set_new(p->props, key, json_string(v));
    }
    return true;
}

/*
 * Refuses, before any body byte is read, a new file for a version that takes
 * none (frozen past the first stage, revoked, deleted).  A retry of a file
 * the version already holds goes on: it is answered 200 as before.  apply
 * checks again under its lock, so this only saves the client the upload.
 */
static bool version_takes_files(struct conn *c, struct put *p)
{
    repo_db *db = conn_server(c)->db;
    struct op_result res = {0};
    struct artifact a;
    bool ok = repo_check_new_file(db, &p->coord, &res) != ARCA_E_CONFLICT ||
              repo_get_artifact(db, &p->coord, &a) == 0;
    if (!ok) {
        if (conn_has_body(c))
            resp_close_after(c); /* the body is not read */
        resp_error(c, 409, res.code, NULL, "%s", res.message);
    }
    op_result_clear(&res);
    return ok;
}

static void put_headers(struct conn *c)
{
    struct server *srv = conn_server(c);
    struct put *p = calloc(1, sizeof(*p));
    if (!p) {
        resp_error(c, 500, "internal", NULL, "out of memory");
        return;
    }
    p->c = c;
    conn_set_ctx(c, p);
    if (parse_coord(c, strlen("/repos/"), &p->coord) != 0 ||
        !conn_authorize(c, "write", p->coord.repo))
        return;
    const char *why = NULL;
    if (coord_new_name_check(&p->coord, &why) != 0) {
        resp_error(c, 400, "invalid_path", NULL, "invalid artifact path: %s", why);
        return;
    }
    if (!read_checksum(c, "X-Checksum-Sha256", &p->want_sha256, p->exp_sha256, 32) ||
        !read_checksum(c, "X-Checksum-Sha1", &p->want_sha1, p->exp_sha1, 20) ||
        !read_checksum(c, "X-Checksum-Md5", &p->want_md5, p->exp_md5, 16) ||
        !read_content_digest(c, p))
        return;
    if (!read_properties(c, p) || !version_takes_files(c, p))
        return;
    const char *inm = conn_header(c, "If-None-Match");
    if (inm && strcmp(inm, "*") == 0) {
        struct artifact a;
        int rc = repo_get_artifact(srv->db, &p->coord, &a);
        if (rc == 0) {
            resp_error(c, 412, "precondition_failed", NULL,
                       "If-None-Match: * and %s/%s/%s/%s exists", p->coord.repo, p->coord.name,
                       p->coord.version, p->coord.path);
            return;
        }
        if (rc != ARCA_E_NOTFOUND) {
            resp_error(c, 500, "internal", NULL, "index lookup failed: %s", arca_strerror(rc));
            return;
        }
    }
    const char *deploy = conn_header(c, "X-Checksum-Deploy");
    if (deploy && strcasecmp(deploy, "true") != 0 && strcasecmp(deploy, "false") != 0) {
        resp_error(c, 400, "bad_request", NULL, "X-Checksum-Deploy must be true or false");
        return;
    }
    if (deploy && strcasecmp(deploy, "true") == 0) {
        if (!p->want_sha256 && !p->want_sha1) {
            resp_error(c, 400, "bad_request", NULL,
                       "X-Checksum-Deploy needs X-Checksum-Sha256 or X-Checksum-Sha1");
            return;
        }
        if (conn_has_body(c)) {
            resp_error(c, 400, "bad_request", NULL, "X-Checksum-Deploy takes no body");
            return;
        }
        p->deploy = true;
        put_finalize(p);
        return;
    }
    if (!conn_is_chunked(c) && conn_content_length(c) < 0) {
        resp_close_after(c); /* bytes of a body without a length would read as a request */
        resp_error(c, 411, "length_required",
                   NULL, "send Content-Length or Transfer-Encoding: chunked");
        return;
    }
    /* A body shorter than a chunk never seals one before it ends: its length is enough. */
    int64_t cl = conn_is_chunked(c) ? -1 : conn_content_length(c);
    p->cap[0] = cl >= 0 && cl < (int64_t)CHUNK ? (size_t)cl + 1 : CHUNK_ROOM;
    p->buf[0] = chunk_alloc(p->cap[0]);
    int rc = p->buf[0] ? blob_writer_new(srv->blobs, &p->w) : -ENOMEM;
    if (rc != 0) {
        resp_error(c, rc == -ENOSPC ? 507 : 500, rc == -ENOSPC ? "insufficient_storage" : "internal",
                   NULL, "cannot start the upload: %s", arca_strerror(rc));
        return;
    }
    /* With Content-Length: 0 the parser completes the message next: an empty file. */
    conn_accept_body(c);
}

/* ---- download ---- */

/* 410 for a revoked or deleted version; true when it may be served. */
static bool version_servable(struct conn *c, const struct coord *coord,
                             struct version_state *vs)
{
    int rc = repo_get_version(conn_server(c)->db, coord->repo, coord->name, coord->version, vs);
    if (rc == ARCA_E_NOTFOUND) {
        memset(vs, 0, sizeof(*vs));
        return true; /* the artifact lookup answers 404 */
    }
    if (rc != 0) {
        resp_error(c, 500, "internal", NULL, "index lookup failed: %s", arca_strerror(rc));
        return false;
    }
    if (vs->revoked_ms) {
        char at[32];
        time_format_iso(vs->revoked_ms, at);
        resp_error(c, 410, "version_revoked",
                   json_pack("{s:s,s:s,s:s}", "reason", vs->revoke_reason, "revoked_by",
                             vs->revoked_by, "revoked_at", at),
                   "version %s was revoked: %s", coord->version, vs->revoke_reason);
        return false;
    }
    return true;
}

static void serve(struct conn *c, const struct coord *coord, const char *resolved);

static void get_headers(struct conn *c)
{
    struct coord coord;
    if (parse_coord(c, strlen("/repos/"), &coord) != 0 || !conn_authorize(c, "read", coord.repo))
        return;
    serve(c, &coord, NULL);
}

/*
 * /stages/{stage}/{repo}/{name}/{version|latest}/{path}: the file only when
 * its version has reached at least that stage and is not revoked (404 never
 * reached, 410 revoked).  "latest" resolves to the newest such version, named
 * in X-Arca-Resolved-Version.
 */
static void stage_headers(struct conn *c)
{
    repo_db *db = conn_server(c)->db;
    const char *path = conn_path(c) + strlen("/stages/");
    const char *slash = memchr(path, '/', conn_path_len(c) - strlen("/stages/"));
    char stage[STAGE_NAME_MAX];
    size_t sl = slash ? (size_t)(slash - path) : 0;
    struct coord coord;
    struct version_state vs;
    if (sl == 0 || sl >= sizeof(stage)) {
        resp_error(c, 400, "invalid_path", NULL,
                   "expected /stages/{stage}/{repo}/{name}/{version|latest}/{path}");
        return;
    }
    memcpy(stage, path, sl);
    stage[sl] = '\0';
    int want = stages_rank(repo_policy(db), stage);
    if (parse_coord(c, strlen("/stages/") + sl + 1, &coord) != 0 ||
        !conn_authorize(c, "read", coord.repo))
        return;
    if (want < 0) {
        resp_error(c, 404, "not_found", NULL, "no stage '%s'", stage);
        return;
    }
    bool latest = strcmp(coord.version, "latest") == 0;
    if (latest) {
        int rc = repo_latest_in_stage(db, coord.repo, coord.name, stage, coord.version);
        if (rc == ARCA_E_NOTFOUND) {
            resp_error(c, 404, "not_found", NULL, "no version of %s/%s has reached '%s'",
                       coord.repo, coord.name, stage);
            return;
        }
        if (rc != 0) {
            resp_error(c, 500, "internal", NULL, "index lookup failed: %s", arca_strerror(rc));
            return;
        }
    }
    if (!version_servable(c, &coord, &vs))
        return;
    int have = repo_stage_rank(db, &vs);
    if (vs.created_ms == 0 || vs.deleted_ms || have < want) {
        resp_error(c, 404, "not_found", NULL, "version %s of %s/%s has not reached '%s'%s%s",
                   coord.version, coord.repo, coord.name, stage, vs.created_ms ? "; it is in " : "",
                   vs.created_ms ? repo_stage_of(db, &vs) : "");
        return;
    }
    serve(c, &coord, latest ? coord.version : NULL);
}

static void serve(struct conn *c, const struct coord *cp, const char *resolved)
{
    struct server *srv = conn_server(c);
    struct coord coord = *cp;
    struct artifact a;
    struct version_state vs;
    int rc = repo_get_artifact(srv->db, &coord, &a);
    /* The record carries its version's revocation; the reason is read only then. */
    if (rc == 0 && a.revoked && !version_servable(c, &coord, &vs))
        return;
    if (rc == ARCA_E_NOTFOUND) {
        resp_error(c, 404, "not_found", NULL, "no artifact at %s/%s/%s/%s", coord.repo,
                   coord.name, coord.version, coord.path);
        return;
    }
    if (rc != 0) {
        resp_error(c, 500, "internal", NULL, "index lookup failed: %s", arca_strerror(rc));
        return;
    }
    serve_blob(c, &a.dig, a.created_ms, content_type_for(coord.path), resolved);
}

/*
 * Reads a small blob (one block) whole into the worker's scratch, verifying
 * it against its block sum (storage.verify_on_download), and keeps a copy in
 * the worker's file cache.  *out: the bytes.  0, or an error: a failed
 * block-sum lookup is answered here (500), a failed read or check is logged
 * and left to the caller, which answers it as any failed verification.
 */
static int small_blob_read(struct conn *c, int fd, const struct blob_digests *d, const char *sha256,
                           const unsigned char **out)
{
    struct server *srv = conn_server(c);
    struct worker *w = conn_worker(c);
    struct blob_blocks blocks = {0};
    int rc = 0;
    if (srv->cfg.verify_on_download) {
        struct blob_digests bdig;
        rc = repo_get_blob(srv->db, d->sha256, &bdig, &blocks);
        if (rc != 0) {
            resp_error(c, 500, "internal", NULL, "cannot read the block checksums: %s",
                       arca_strerror(rc));
            return rc;
        }
    }
    rc = blob_check_block(fd, d->size, srv->cfg.verify_on_download ? &blocks : NULL, 0,
                          w->scratch);
    blob_blocks_cleanup(&blocks);
    if (rc != 0) {
        if (rc == ARCA_E_CORRUPT)
            atomic_fetch_add(&srv->metrics.corrupt_detected, 1);
        LOG_E("req %s: block 0 of blob %s (%s) failed verification: %s", conn_request_id(c),
              sha256, conn_path(c), arca_strerror(rc));
        return rc;
    }
    struct stat st;
    struct timespec now;
    if (w->fcache && fstat(fd, &st) == 0 && clock_gettime(CLOCK_REALTIME, &now) == 0)
        file_cache_put(w->fcache, d->sha256, &st, w->scratch, (size_t)d->size,
                       (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec);
    *out = w->scratch;
    return 0;
}

/*
 * Whether any line of an If-Match / If-None-Match field lists etag: several
 * lines of one field are one list (RFC 9110 5.3).
 */
static bool etag_field_matches(const struct conn *c, const char *field, const char *etag,
                               bool strong)
{
    int n = conn_header_count(c, field);
    for (int i = 0; i < n; i++) {
        const char *v = conn_header_nth(c, field, i);
        if (v && (strong ? etag_list_matches_strong(v, etag) : etag_list_matches(v, etag)))
            return true;
    }
    return false;
}

void serve_blob(struct conn *c, const struct blob_digests *d, uint64_t created_ms,
                const char *content_type, const char *resolved)
{
    struct server *srv = conn_server(c);
    struct worker *w = conn_worker(c);
    int rc = 0;
    char sha256[65], etag[68], lastmod[40] = "";
    hex_encode(d->sha256, 32, sha256);
    snprintf(etag, sizeof(etag), "\"%s\"", sha256);
    if (created_ms)
        time_format_http((int64_t)(created_ms / 1000), lastmod);

    /*
     * A small file is answered from memory: from the worker's file cache
     * while the file on disk is unchanged (one stat), else read and verified
     * whole, then cached.  Larger ones stream from the file, verified block
     * by block.
     */
    const unsigned char *mem = NULL;
    bool small = d->size > 0 && d->size <= FILE_CACHE_ENTRY_MAX;
    if (small && w->fcache) {
        char path[PATH_MAX];
        size_t mlen = 0;
        if (blob_store_path(srv->blobs, d->sha256, path, sizeof(path)) == 0)
            mem = file_cache_get(w->fcache, d->sha256, path, &mlen);
        if (mem && mlen != d->size)
            mem = NULL;
        atomic_fetch_add_explicit(mem ? &srv->metrics.file_cache_hits
                                      : &srv->metrics.file_cache_misses,
                                  1, memory_order_relaxed);
    }
    struct blob_blocks *blocks = NULL;
    int fd = -1;
    uint64_t size = d->size;
    if (!mem)
        rc = blob_open(srv->blobs, d->sha256, &fd, &size);
    if (rc != 0 || size != d->size) {
        atomic_fetch_add(&srv->metrics.corrupt_detected, 1);
        LOG_E("req %s: blob %s for %s is %s", conn_request_id(c), sha256, conn_path(c),
              rc == -ENOENT ? "missing" : rc != 0 ? arca_strerror(rc) : "the wrong size");
        if (fd >= 0)
            close(fd);
        resp_error(c, 500, "corrupt_blob", json_pack("{s:s}", "sha256", sha256),
                   "the stored content of this artifact is %s; run `arcad verify`",
                   rc == -ENOENT ? "missing" : "damaged");
        return;
    }

    uint64_t start = 0, len = size;
    int status = 200;
    /*
     * Preconditions in RFC 9110's order (13.2.2): If-Match, else
     * If-Unmodified-Since (412 when it fails); then If-None-Match, else
     * If-Modified-Since (304).  A date that does not parse is ignored, as the
     * RFC says; the file's time is its Last-Modified (whole seconds).
     */
    const char *im = conn_header(c, "If-Match"), *ius = conn_header(c, "If-Unmodified-Since");
    const char *inm = conn_header(c, "If-None-Match"), *ims = conn_header(c, "If-Modified-Since");
    int64_t mtime = (int64_t)(created_ms / 1000), when;
    /*
     * A stage alias ("latest") can move back to an older file when the newest
     * is revoked or demoted, so its dates say nothing about what the client
     * holds: only the ETag validates it.
     */
    bool have_time = created_ms != 0 && !resolved;
    if (im ? !etag_field_matches(c, "If-Match", etag, true)
           : ius && have_time && time_parse_http(ius, &when) == 0 && mtime > when) {
        if (fd >= 0)
            close(fd);
        resp_start(c, 412);
        resp_header(c, "ETag", "%s", etag);
        if (lastmod[0])
            resp_header(c, "Last-Modified", "%s", lastmod);
        resp_finish_json(c, error_json("precondition_failed", NULL,
                                       im ? "If-Match: the file's ETag is %s"
                                          : "If-Unmodified-Since: the file was last modified %s",
                                       im ? etag : lastmod));
        return;
    }
    if (inm ? etag_field_matches(c, "If-None-Match", etag, false)
            : ims && have_time && time_parse_http(ims, &when) == 0 && mtime <= when)
        status = 304;
    const char *range = conn_header(c, "Range");
    if (status == 200 && range && strcmp(conn_method(c), "GET") == 0) {
        const char *if_range = conn_header(c, "If-Range");
        bool honour = true;
        if (if_range) {
            if (if_range[0] == '"' || (if_range[0] == 'W' && if_range[1] == '/'))
                honour = strcmp(if_range, etag) == 0; /* strong comparison only */
            else
                honour = have_time && lastmod[0] && strcmp(if_range, lastmod) == 0;
        }
        if (honour) {
            enum range_result rr = range_parse(range, size, &start, &len);
            if (rr == RANGE_UNSATISFIABLE) {
                if (fd >= 0)
                    close(fd);
                resp_start(c, 416);
                resp_header(c, "Content-Range", "bytes */%llu", (unsigned long long)size);
                resp_finish_json(c, error_json("range_not_satisfiable", NULL,
                                               "the range '%s' is outside the %llu-byte file",
                                               range, (unsigned long long)size));
                return;
            }
            if (rr == RANGE_OK)
                status = 206;
            else
                start = 0, len = size;
        }
    }

    if (status == 304) {
        if (fd >= 0)
            close(fd);
    } else if (small) {
        if (!mem) {
            rc = small_blob_read(c, fd, d, sha256, &mem);
            close(fd);
        }
    } else {
        if (srv->cfg.verify_on_download && len > 0) {
            struct blob_digests bdig;
            blocks = calloc(1, sizeof(*blocks));
            rc = blocks ? repo_get_blob(srv->db, d->sha256, &bdig, blocks) : -ENOMEM;
            if (rc != 0) {
                free(blocks);
                close(fd);
                resp_error(c, 500, "internal", NULL, "cannot read the block checksums: %s",
                           arca_strerror(rc));
                return;
            }
        }
        /* Verifies the first window before any header goes out. */
        rc = resp_file_open(c, fd, size, start, len, blocks, sha256);
    }
    if (rc != 0) { /* the first block failed (logged where it was read) */
        if (!conn_responded(c))
            resp_error(c, 500, rc == ARCA_E_CORRUPT ? "corrupt_blob" : "internal",
                       json_pack("{s:s}", "sha256", sha256),
                       "the stored content failed verification (%s); run `arcad verify`",
                       arca_strerror(rc));
        return;
    }

    char sha1[41], md5[33];
    hex_encode(d->sha1, 20, sha1);
    hex_encode(d->md5, 16, md5);
    resp_start(c, status);
    resp_header(c, "ETag", "%s", etag);
    if (lastmod[0])
        resp_header(c, "Last-Modified", "%s", lastmod);
    resp_header(c, "Accept-Ranges", "bytes");
    resp_header(c, "X-Checksum-Sha256", "%s", sha256);
    resp_header(c, "X-Checksum-Sha1", "%s", sha1);
    resp_header(c, "X-Checksum-Md5", "%s", md5);
    /*
     * Uploaded bytes are never a page of this server: no type sniffing, and an
     * uploaded .html or .svg opened in a browser runs no script with this
     * origin (anonymous-read repositories are reachable from a browser).
     */
    resp_header(c, "X-Content-Type-Options", "nosniff");
    resp_header(c, "Content-Security-Policy", "sandbox");
    if (resolved)
        resp_header(c, "X-Arca-Resolved-Version", "%s", resolved);
    if (status == 304) {
        resp_finish_mem(c, NULL, NULL, 0);
        return;
    }
    if (status == 206)
        resp_header(c, "Content-Range", "bytes %llu-%llu/%llu", (unsigned long long)start,
                    (unsigned long long)(start + len - 1), (unsigned long long)size);
    if (mem) {
        resp_finish_mem(c, content_type, mem + start, (size_t)len);
        return;
    }
    resp_header(c, "Content-Type", "%s", content_type);
    resp_file_send(c);
}

static void stages_headers(struct conn *c)
{
    if (!reject_unless_get(c))
        stage_headers(c);
}

const struct handler stage_handler = {.route = "stage", .on_headers = stages_headers};

static void artifact_headers(struct conn *c)
{
    const char *m = conn_method(c);
    if (strcmp(m, "PUT") == 0) {
        put_headers(c);
    } else if (strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0) {
        get_headers(c);
    } else {
        resp_method_not_allowed(c, "GET, HEAD, PUT");
    }
}

const struct handler artifact_handler = {
    .route = "artifact",
    .on_headers = artifact_headers,
    .on_body = put_body,
    .on_complete = put_complete,
    .on_free = put_free,
};
