/*
 * Fuzz target for request parsing: server/reqparse.c, the parser arcad's
 * connections use (http-parser, the system library arcad links, with the
 * strict checks, header collection and limits around it), driven the way
 * server/conn.c drives it: the feed loop (slices of at most FEED_MAX from the
 * first contiguous run of input, fed again after every stop, only while
 * reqparse_wants_input), dispatch (reqparse_check, then the path checks of
 * the artifact and metadata handlers: path_split, then coord_set or the
 * coordinate checks) and a model of the answer's effect on the connection
 * (conn.c's fail_request / resp_start rules).  The feed loop and the answer
 * model are the only parts mirrored here; keep them in step with conn.c.
 *
 * Input: five control bytes, then the bytes of the connection.
 *   [0] server.max_url_bytes, [1] server.max_header_bytes,
 *   [2] server.max_upload_bytes, [3] how much body the fake handler takes
 *   before it pushes back, [4] how many arrival sizes follow (0-8), then those
 *   sizes: the input arrives in runs of those lengths, cycled, as reads from
 *   a socket would deliver it.
 *
 * Properties (each aborts):
 *   - the connection's transcript (what was dispatched, with which method,
 *     target and headers, each body's length and hash, how each request
 *     ended) is the same when all the input arrives at once as when it arrives
 *     in the fuzzer's runs;
 *   - when reqparse reports a chunked message complete, its strict chunk
 *     check has reached the end too: the parser does not finish the message
 *     earlier or later than the check (a request smuggling gap);
 *   - what reaches a handler is within the configured limits, its header
 *     block ended in LF (the byte the parser hands back with
 *     REQPARSE_HEADERS), its target has no NUL, its header values no control
 *     character but HTAB, and its request line satisfies
 *     http_request_line_ok;
 *   - a coordinate the artifact handler accepts satisfies the contract in
 *     coord.h (fuzz_util.h's reference checks).
 *
 * The four findings in tests/fuzz/crashes/README.md, fixed in 6d889ed, broke
 * the header-end, chunk check, header value and request line properties; their
 * inputs are in the seed corpus as regress-*.
 *
 * ARCA_FUZZ_VERBOSE=1 prints both transcripts for every input (to see what a
 * crashing input does: ./fuzz_http_request crash-file).
 */
#include "arca_err.h"
#include "coord.h"
#include "fuzz_util.h"
#include "httputil.h"
#include "reqparse.h"

#include <stdarg.h>
#include <strings.h>

#define FEED_MAX (256u * 1024) /* as in conn.c */
#define LINE_CAP (1u << 16)    /* request line kept for http_request_line_ok */
#define MAX_SEGMENTS (3 + COORD_PATH_DEPTH + 1)

/* The configuration and the input shared by both runs. */
struct setup {
    struct reqparse_limits lim;
    uint64_t handler_room;
    size_t runs[8];
    int nruns;
    const char *data;
    size_t len;
};

/* What a run did, as text, so two runs compare with memcmp and print when they differ. */
struct transcript {
    char *buf;
    size_t len, cap;
    int fail_status; /* the status that ended the connection, or 0 */
    size_t fail_at;  /* where its "fail" line starts in buf */
    int requests;    /* requests answered and done */
};

/* One connection: the parser, plus the answer state conn.c keeps. */
struct conn {
    const struct setup *s;
    struct transcript *t;
    struct reqparse *rp;
    bool keep_alive;
    int status;
    bool responded, close_after, resp_done;

    /* The harness's own. */
    char *line; /* the whole request line as consumed, for http_request_line_ok */
    size_t line_len;
    bool line_started, line_done, line_overflow;
    uint64_t body_hash, room;
    bool put;
    bool header_end_lf; /* the header block ended in LF */
};

static void emit(struct transcript *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void emit(struct transcript *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    FUZZ_ASSERT(n >= 0);
    if (t->len + (size_t)n + 1 > t->cap) {
        t->cap = (t->len + (size_t)n + 1) * 2;
        t->buf = realloc(t->buf, t->cap);
        FUZZ_ASSERT(t->buf);
    }
    va_start(ap, fmt);
    vsnprintf(t->buf + t->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

/* Bytes as text, with anything unprintable escaped. */
static void emit_bytes(struct transcript *t, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch >= 0x21 && ch < 0x7f && ch != '\\')
            emit(t, "%c", ch);
        else
            emit(t, "\\x%02x", ch);
    }
}

static uint64_t fnv(uint64_t h, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 0x100000001b3ull;
    return h;
}

/* ---- answers: only what decides the connection's fate (conn.c resp_start, fail_request) ---- */

static void respond(struct conn *c, int status)
{
    c->status = status;
    c->responded = true;
    c->resp_done = true;
    if (reqparse_headers_done(c->rp) && reqparse_has_body(c->rp) &&
        !reqparse_msg_complete(c->rp) && !reqparse_body_accepted(c->rp))
        c->close_after = true;
    emit(c->t, " -> %d%s\n", status, c->close_after ? " close" : "");
}

static void fail_request(struct conn *c, int status)
{
    if (c->responded) {
        c->close_after = true;
        return;
    }
    c->close_after = true;
    c->keep_alive = false;
    reqparse_stop(c->rp);
    c->t->fail_status = status;
    c->t->fail_at = c->t->len;
    emit(c->t, "fail %d\n", status);
    c->status = status;
    c->responded = c->resp_done = true;
}

/* The fake upload handler: takes the bytes, and pushes back once its buffer is full. */
static int body_sink(void *arg, const char *data, size_t len)
{
    struct conn *c = arg;
    c->body_hash = fnv(c->body_hash, data, len);
    c->room = len >= c->room ? 0 : c->room - len;
    return c->room == 0;
}

/* ---- dispatch and the handlers' path checks ---- */

/* h_artifact.c parse_coord: /repos/{repo}/{name}/{version}/{path...} → 0 or 400. */
static int artifact_path(struct conn *c, const char *path, size_t len)
{
    char *buf = malloc(len + MAX_SEGMENTS + 1);
    char *segs[MAX_SEGMENTS];
    size_t lens[MAX_SEGMENTS];
    const char *why = NULL;
    int rc = -1;
    FUZZ_ASSERT(buf);
    int n = path_split(path, len, buf, segs, lens, MAX_SEGMENTS);
    if (n < 4)
        goto out;
    for (int i = 0; i < n; i++)
        if (strlen(segs[i]) != lens[i] || memchr(segs[i], '/', lens[i]))
            goto out;
    for (int i = 4; i < n; i++)
        segs[i][-1] = '/';
    struct coord co;
    if (coord_set(&co, segs[0], segs[1], segs[2], segs[3], &why) != 0)
        goto out;
    /* What the index will key on must satisfy the contract. */
    FUZZ_ASSERT(ref_repo(co.repo, strlen(co.repo)));
    FUZZ_ASSERT(ref_segment(co.name, strlen(co.name)));
    FUZZ_ASSERT(ref_segment(co.version, strlen(co.version)));
    FUZZ_ASSERT(ref_path(co.path, strlen(co.path)));
    emit(c->t, " coord %s|%s|%s|", co.repo, co.name, co.version);
    emit_bytes(c->t, co.path, strlen(co.path));
    rc = 0;
out:
    free(buf);
    return rc;
}

/* h_meta.c: /api/v1/repos[/{repo}[/{name}[/{version}]]] → 200, 400 or 404. */
static int meta_path(const char *path, size_t len)
{
    char *buf = malloc(len + 8);
    char *segs[4];
    size_t lens[4];
    const char *why = NULL;
    int status = 200;
    FUZZ_ASSERT(buf);
    int n = len == 0 ? 0 : path_split(path, len, buf, segs, lens, 4);
    if (n < 0) {
        status = n == ARCA_E_TOOBIG ? 404 : 400;
        goto out;
    }
    for (int i = 0; i < n; i++) {
        bool bad = strlen(segs[i]) != lens[i] ||
                   (i == 0 ? coord_repo_check(segs[i], lens[i], &why)
                           : coord_segment_check(segs[i], lens[i], &why)) != 0;
        if (bad) {
            status = 400;
            goto out;
        }
    }
out:
    free(buf);
    return status;
}

static void dispatch(struct conn *c)
{
    struct transcript *t = c->t;
    struct reqparse *rp = c->rp;
    c->keep_alive = reqparse_keep_alive(rp);
    const char *method = reqparse_method(rp);

    /* What the parser handed over: within limits, NUL-free strings of the lengths counted. */
    const char *target = reqparse_path(rp);
    size_t target_len = reqparse_target_len(rp);
    FUZZ_ASSERT(target_len <= c->s->lim.max_url_bytes);
    FUZZ_ASSERT(reqparse_header_bytes(rp) <= c->s->lim.max_header_bytes);
    FUZZ_ASSERT(strlen(target) == target_len);
    int nh = reqparse_nheaders(rp);
    for (int i = 0; i < nh; i++) {
        const char *name, *value;
        size_t nlen, vlen;
        reqparse_header_at(rp, i, &name, &nlen, &value, &vlen);
        FUZZ_ASSERT(strlen(name) == nlen);
    }

    emit(t, "req %s ", method);
    emit_bytes(t, target, target_len);
    emit(t, " ka=%d chunked=%d cl=%lld\n", c->keep_alive, reqparse_chunked(rp),
         (long long)reqparse_content_length(rp));
    for (int i = 0; i < nh; i++) {
        const char *name, *value;
        size_t nlen, vlen;
        reqparse_header_at(rp, i, &name, &nlen, &value, &vlen);
        emit(t, "  ");
        emit_bytes(t, name, nlen);
        emit(t, ": ");
        emit_bytes(t, value, vlen);
        emit(t, "\n");
    }

    struct reqparse_verdict v;
    switch (reqparse_check(rp, &v)) {
    case REQPARSE_OK:
        break;
    case REQPARSE_FAIL:
        fail_request(c, v.status);
        return;
    case REQPARSE_REFUSE:
        respond(c, v.status);
        return;
    case REQPARSE_REFUSE_CLOSE:
        respond(c, v.status);
        c->close_after = true;
        return;
    }

    /*
     * The request is accepted from here on (what is left are handler
     * decisions), so what it is made of must be sound.  The header block
     * ended in LF: the parser and a strict peer agree where the body starts.
     */
    FUZZ_ASSERT(c->header_end_lf);
    /* RFC 9110 5.5: no CTL but HTAB in a field value (a NUL would also cut the C string). */
    for (int i = 0; i < nh; i++) {
        const char *name, *value;
        size_t nlen, vlen;
        reqparse_header_at(rp, i, &name, &nlen, &value, &vlen);
        const unsigned char *val = (const unsigned char *)value;
        for (size_t k = 0; k < vlen; k++) {
            if ((val[k] >= 0x20 && val[k] != 0x7f) || val[k] == '\t')
                continue;
            FUZZ_ASSERT(!"a header value holds a control character");
        }
    }
    /* The request line passes the stricter whole-line check too (reqparse checks its parts). */
    if (!c->line_overflow && !http_request_line_ok(c->line, c->line_len)) {
        fprintf(stderr, "request line accepted by reqparse but not by http_request_line_ok: ");
        fwrite(c->line, 1, c->line_len, stderr);
        fprintf(stderr, "\n");
        FUZZ_ASSERT(!"request line passes reqparse's checks only");
    }

    const char *path = reqparse_path(rp);
    size_t plen = reqparse_path_len(rp);
    if (plen >= 7 && memcmp(path, "/repos/", 7) == 0) {
        if (artifact_path(c, path + 7, plen - 7) != 0) {
            respond(c, 400);
        } else if (strcmp(method, "PUT") == 0) {
            c->put = true;
            reqparse_accept_body(rp); /* answered at the end of the body */
            emit(t, " accept\n");
        } else {
            respond(c, 200);
        }
    } else if (plen >= 13 && memcmp(path, "/api/v1/repos", 13) == 0 &&
               (plen == 13 || path[13] == '/')) {
        respond(c, meta_path(path + 13, plen - 13));
    } else {
        respond(c, 404);
    }
}

/* ---- the feed loop, as in conn.c ---- */

/*
 * The harness's own copy of the request line as the parser consumed it
 * (leading CR/LF skipped, CR before the LF dropped), for http_request_line_ok.
 */
static void capture_line(struct conn *c, const char *p, size_t n)
{
    for (size_t i = 0; i < n && !c->line_done; i++) {
        char ch = p[i];
        if (!c->line_started) {
            if (ch == '\r' || ch == '\n')
                continue;
            c->line_started = true;
        }
        if (ch == '\n') {
            c->line_done = true;
            if (c->line_len > 0 && c->line[c->line_len - 1] == '\r')
                c->line_len--;
            break;
        }
        if (c->line_len < LINE_CAP)
            c->line[c->line_len++] = ch;
        else
            c->line_overflow = true;
    }
}

static void reset_request(struct conn *c)
{
    reqparse_reset(c->rp);
    c->status = 0;
    c->responded = c->close_after = c->resp_done = false;
    c->line_len = 0;
    c->line_started = c->line_done = c->line_overflow = false;
    c->body_hash = 0xcbf29ce484222325ull;
    c->room = c->s->handler_room;
    c->put = false;
    c->header_end_lf = false;
}

/*
 * Runs the connection over the input, arriving in runs of the given sizes
 * (nruns 0: all at once).  Fills t.
 */
static void run(const struct setup *s, bool sliced, struct transcript *t)
{
    struct conn *c = calloc(1, sizeof(*c));
    FUZZ_ASSERT(c);
    c->s = s;
    c->t = t;
    c->line = malloc(LINE_CAP);
    FUZZ_ASSERT(c->line);
    FUZZ_ASSERT(reqparse_new(&s->lim, body_sink, c, &c->rp) == 0);
    reset_request(c);

    size_t pos = 0, run_end = 0;
    int next_run = 0;
    for (;;) {
        /* conn_process: feed while the request wants input and bytes have arrived. */
        while (reqparse_wants_input(c->rp, c->responded, c->close_after)) {
            if (pos == run_end) {
                if (pos == s->len)
                    break;
                size_t n = sliced && s->nruns ? s->runs[next_run++ % s->nruns] : s->len;
                run_end = pos + n < s->len ? pos + n : s->len;
            }
            size_t avail = run_end - pos;
            size_t feed = avail < FEED_MAX ? avail : FEED_MAX;
            const char *p = s->data + pos;
            size_t n;
            enum reqparse_event ev = reqparse_feed(c->rp, p, feed, &n);
            FUZZ_ASSERT(n <= feed);
            capture_line(c, p, n);
            pos += n;
            if (ev == REQPARSE_ERROR) {
                struct reqparse_verdict v;
                reqparse_error(c->rp, &v);
                FUZZ_ASSERT(v.action == REQPARSE_FAIL);
                fail_request(c, v.status);
                break;
            }
            if (ev == REQPARSE_HEADERS) {
                /*
                 * The parser stops on the header block's last byte without
                 * consuming it: the next feed (and the chunk check) starts
                 * with it.  reqparse refuses the request unless the byte
                 * after the block's last CR is LF; dispatch asserts that an
                 * accepted request's block ended in LF.
                 */
                FUZZ_ASSERT(n < feed);
                c->header_end_lf = p[n] == '\n';
                dispatch(c);
            } else if (ev == REQPARSE_COMPLETE) {
                /*
                 * The parser says the message ends here: the strict check,
                 * fed the same bytes, must agree, or the two disagree about
                 * where the next request starts.
                 */
                if (reqparse_chunked(c->rp))
                    FUZZ_ASSERT(reqparse_chunk_state(c->rp) == CHUNK_CHECK_DONE);
                if (reqparse_body_accepted(c->rp) && c->put) {
                    uint64_t got = reqparse_body_bytes(c->rp);
                    FUZZ_ASSERT(got <= s->lim.max_upload_bytes);
                    emit(t, " body %llu %016llx\n", (unsigned long long)got,
                         (unsigned long long)c->body_hash);
                    respond(c, 201);
                }
            }
        }
        /* The answer is out: what conn.c's write callback and request_done would do. */
        if (reqparse_body_paused(c->rp)) { /* the handler drained its buffer: conn_resume_body */
            reqparse_resume_body(c->rp);
            c->room = s->handler_room;
            continue;
        }
        if (c->resp_done && reqparse_msg_complete(c->rp) && !c->close_after && c->keep_alive) {
            t->requests++;
            emit(t, "done\n");
            reset_request(c);
            continue;
        }
        break;
    }
    const char *state = "idle";
    if (c->resp_done)
        state = c->close_after || !c->keep_alive ? "closed" : "answered";
    else if (reqparse_in_request(c->rp))
        state = "mid-request";
    emit(t, "end %s\n", state);
    reqparse_free(c->rp);
    free(c->line);
    free(c);
}

/* The limits that can change which error a request gets, depending on where a read ends. */
static bool limit_status(int status)
{
    return status == 413 || status == 414 || status == 431;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz f = {data, size};
    struct setup s = {0};
    s.lim.max_url_bytes = 256 + (uint64_t)fz_u8(&f) * 32;     /* config bounds: 256 .. 1M */
    s.lim.max_header_bytes = 1024 + (uint64_t)fz_u8(&f) * 64; /* config bounds: 1K .. 1M */
    s.lim.max_upload_bytes = (uint64_t)fz_u8(&f) * 16;        /* config bounds: 0 .. */
    s.handler_room = 1 + fz_u8(&f);
    s.nruns = fz_u8(&f) % 9;
    for (int i = 0; i < s.nruns; i++)
        s.runs[i] = 1 + fz_u8(&f);
    size_t len;
    char *bytes = fz_bytes(&f, &len); /* exact size: a read past the input is an ASan report */
    s.data = bytes;
    s.len = len;

    struct transcript whole = {0}, sliced = {0};
    run(&s, false, &whole);
    run(&s, true, &sliced);

    /*
     * The same connection whatever the reads: the same transcript.  One
     * exception: a request that fails may fail with a different status when a
     * size limit is involved, since a read that ends inside an over-long URL
     * or header hands its bytes to the callbacks (and the limit) before the
     * parser has seen a bad byte further on.  The request still fails, and
     * everything before it is the same.
     */
    bool same = whole.len == sliced.len && memcmp(whole.buf, sliced.buf, whole.len) == 0;
    if (!same && whole.fail_status && sliced.fail_status &&
        (limit_status(whole.fail_status) || limit_status(sliced.fail_status)) &&
        whole.fail_at == sliced.fail_at && memcmp(whole.buf, sliced.buf, whole.fail_at) == 0)
        same = true;
    if (!same || getenv("ARCA_FUZZ_VERBOSE")) {
        fprintf(stderr, "---- all at once:\n%.*s---- in runs:\n%.*s----\n", (int)whole.len,
                whole.buf, (int)sliced.len, sliced.buf);
    }
    if (!same)
        FUZZ_ASSERT(!"the outcome depends on how the input was split into reads");
    free(whole.buf);
    free(sliced.buf);
    free(bytes);
    return 0;
}
