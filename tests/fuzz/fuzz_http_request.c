/*
 * Fuzz target for request parsing: http-parser (the system library arcad links)
 * driven the way server/conn.c drives it, with the same checks on what comes
 * out.  conn.c's glue is static and tied to libevent, so the parts that decide
 * what a request is are mirrored here: the parser callbacks with their limits,
 * the feed loop (slices of at most FEED_MAX from the first contiguous run of
 * input, re-fed after every pause), scan_request_line, the strict chunk check,
 * dispatch's checks, and the path checks of the artifact and metadata handlers
 * (path_split, then coord_set or the coordinate checks).  Keep them in step
 * with conn.c, h_artifact.c and h_meta.c.
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
 *   - when http-parser ends a message whose headers declared it chunked, the
 *     strict chunk check, fed the same bytes, has reached the end too: the
 *     parser does not finish the message earlier or later than the check (a
 *     request smuggling gap);
 *   - what reaches a handler is within the configured limits, its header
 *     block ended in LF (the byte the parser hands back after
 *     on_headers_complete, which conn.c then feeds to the chunk check), its
 *     target has no NUL, its header values no control character but HTAB, and
 *     its request line satisfies http_request_line_ok;
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

#include <http_parser.h>
#include <limits.h>
#include <stdarg.h>
#include <strings.h>

#define FEED_MAX (256u * 1024)
#define MAX_HEADERS 128
#define LINE_CAP (1u << 16) /* request line kept for http_request_line_ok */
#define MAX_SEGMENTS (3 + COORD_PATH_DEPTH + 1)

enum pause_reason { PAUSE_NONE, PAUSE_HEADERS, PAUSE_BODY, PAUSE_COMPLETE };

struct hdr {
    uint32_t name_off, name_len, val_off, val_len;
};

/* The configuration and the input shared by both runs. */
struct setup {
    uint64_t max_url_bytes, max_header_bytes, max_upload_bytes;
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

struct conn {
    const struct setup *s;
    struct transcript *t;
    http_parser parser;

    /* As in conn.c. */
    char *arena;
    size_t arena_len, arena_cap;
    uint32_t url_off, url_len, path_len, query_off;
    struct hdr hdrs[MAX_HEADERS];
    int nhdrs;
    int last_cb;
    size_t header_bytes;
    int parse_status;
    enum pause_reason pause;
    bool in_request, headers_done, msg_complete;
    bool body_accepted, body_paused, keep_alive;
    uint64_t body_bytes;
    struct chunk_check chunks;
    char line_tail[12];
    uint8_t line_tail_len;
    bool line_started, line_done, line_bad;
    bool head_prev_cr, head_bad;
    bool chunked;            /* framing as the headers declared it (trailers cannot change it) */
    int64_t declared_length; /* Content-Length as the headers declared it, -1 if none */
    int status;
    bool responded, close_after, resp_done;

    /* The harness's own. */
    char *line; /* the whole request line, for http_request_line_ok */
    size_t line_len;
    bool line_overflow;
    int chunk_verdict;
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

/* ---- the arena and the parser callbacks, as in conn.c ---- */

static int arena_append(struct conn *c, const char *data, size_t len)
{
    if (c->arena_len + len + 1 > c->arena_cap) {
        size_t cap = c->arena_cap ? c->arena_cap : 1024;
        while (cap < c->arena_len + len + 1)
            cap *= 2;
        char *p = realloc(c->arena, cap);
        if (!p)
            return -1;
        c->arena = p;
        c->arena_cap = cap;
    }
    memcpy(c->arena + c->arena_len, data, len);
    c->arena_len += len;
    c->arena[c->arena_len] = '\0';
    return 0;
}

static int arena_terminate(struct conn *c)
{
    if (arena_append(c, "", 0) != 0)
        return -1;
    c->arena_len++;
    return 0;
}

static const char *conn_header(const struct conn *c, const char *name);

static int on_message_begin(http_parser *p)
{
    struct conn *c = p->data;
    c->in_request = true;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    c->url_len += (uint32_t)len;
    c->header_bytes += len;
    if (c->url_len > c->s->max_url_bytes) {
        c->parse_status = 414;
        return -1;
    }
    return arena_append(c, at, len);
}

static void finish_header_value(struct conn *c)
{
    if (c->last_cb == 2) {
        struct hdr *h = &c->hdrs[c->nhdrs - 1];
        while (h->val_len > 0 && (c->arena[h->val_off + h->val_len - 1] == ' ' ||
                                  c->arena[h->val_off + h->val_len - 1] == '\t'))
            h->val_len--;
        c->arena[h->val_off + h->val_len] = '\0';
    }
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    c->header_bytes += len;
    if (c->header_bytes > c->s->max_header_bytes) {
        c->parse_status = 431;
        return -1;
    }
    if (c->headers_done)
        return 0; /* a trailer field: counted, never stored or acted on */
    if (c->last_cb != 1) {
        if (c->last_cb == 0 && arena_terminate(c) != 0)
            return -1;
        if (c->last_cb == 2) {
            finish_header_value(c);
            if (arena_terminate(c) != 0)
                return -1;
        }
        if (c->nhdrs == MAX_HEADERS) {
            c->parse_status = 431;
            return -1;
        }
        c->hdrs[c->nhdrs].name_off = (uint32_t)c->arena_len;
        c->hdrs[c->nhdrs].name_len = 0;
        c->nhdrs++;
        c->last_cb = 1;
    }
    c->hdrs[c->nhdrs - 1].name_len += (uint32_t)len;
    return arena_append(c, at, len);
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    c->header_bytes += len;
    if (c->header_bytes > c->s->max_header_bytes) {
        c->parse_status = 431;
        return -1;
    }
    if (c->headers_done)
        return 0;
    if (c->last_cb != 2) {
        if (arena_terminate(c) != 0)
            return -1;
        c->hdrs[c->nhdrs - 1].val_off = (uint32_t)c->arena_len;
        c->hdrs[c->nhdrs - 1].val_len = 0;
        c->last_cb = 2;
    }
    c->hdrs[c->nhdrs - 1].val_len += (uint32_t)len;
    return arena_append(c, at, len);
}

static int on_headers_complete(http_parser *p)
{
    struct conn *c = p->data;
    if (c->last_cb == 0 && arena_terminate(c) != 0)
        return -1;
    finish_header_value(c);
    if (arena_terminate(c) != 0)
        return -1;
    c->headers_done = true;
    c->chunked = (p->flags & F_CHUNKED) != 0;
    c->declared_length =
        !c->chunked && p->content_length != ULLONG_MAX && conn_header(c, "Content-Length")
            ? (int64_t)p->content_length
            : -1;
    c->pause = PAUSE_HEADERS;
    http_parser_pause(p, 1);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    c->body_bytes += len;
    if (c->body_bytes > c->s->max_upload_bytes) {
        c->parse_status = 413;
        return -1;
    }
    if (c->body_accepted) {
        /* The fake upload handler: takes the bytes, and pushes back once its buffer is full. */
        c->body_hash = fnv(c->body_hash, at, len);
        c->room = len >= c->room ? 0 : c->room - len;
        if (c->room == 0) {
            c->body_paused = true;
            c->pause = PAUSE_BODY;
            http_parser_pause(p, 1);
        }
    }
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct conn *c = p->data;
    c->msg_complete = true;
    c->pause = PAUSE_COMPLETE;
    http_parser_pause(p, 1);
    return 0;
}

static http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- request accessors, as in conn.c ---- */

static const char *conn_header(const struct conn *c, const char *name)
{
    for (int i = 0; i < c->nhdrs; i++)
        if (strcasecmp(c->arena + c->hdrs[i].name_off, name) == 0)
            return c->arena + c->hdrs[i].val_off;
    return NULL;
}

static int conn_header_count(const struct conn *c, const char *name)
{
    int n = 0;
    for (int i = 0; i < c->nhdrs; i++)
        if (strcasecmp(c->arena + c->hdrs[i].name_off, name) == 0)
            n++;
    return n;
}

static bool conn_is_chunked(const struct conn *c)
{
    return c->chunked;
}

static int64_t conn_content_length(const struct conn *c)
{
    return c->declared_length;
}

static bool conn_has_body(const struct conn *c)
{
    return conn_is_chunked(c) || conn_content_length(c) > 0;
}

/* ---- answers: only what decides the connection's fate ---- */

static void respond(struct conn *c, int status)
{
    c->status = status;
    c->responded = true;
    c->resp_done = true;
    if (c->headers_done && conn_has_body(c) && !c->msg_complete && !c->body_accepted)
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
    c->msg_complete = true;
    c->t->fail_status = status;
    c->t->fail_at = c->t->len;
    emit(c->t, "fail %d\n", status);
    c->status = status;
    c->responded = c->resp_done = true;
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

static int split_url(struct conn *c)
{
    char *url = c->arena + c->url_off;
    if (url[0] != '/') {
        char *p = strstr(url, "://");
        if (!p)
            return -1;
        p = strchr(p + 3, '/');
        if (!p)
            return -1;
        c->url_off = (uint32_t)(p - c->arena);
        url = p;
    }
    char *q = strchr(url, '?');
    if (q) {
        *q = '\0';
        c->path_len = (uint32_t)(q - url);
        c->query_off = (uint32_t)(q + 1 - c->arena);
    } else {
        c->path_len = (uint32_t)strlen(url);
        c->query_off = (uint32_t)(url + c->path_len - c->arena);
    }
    return 0;
}

static void dispatch(struct conn *c)
{
    struct transcript *t = c->t;
    c->keep_alive = http_should_keep_alive(&c->parser) != 0;
    const char *method = http_method_str((enum http_method)c->parser.method);

    /* What the parser handed over: within limits, NUL-free strings of the lengths counted. */
    FUZZ_ASSERT(c->url_len <= c->s->max_url_bytes);
    FUZZ_ASSERT(c->header_bytes <= c->s->max_header_bytes);
    FUZZ_ASSERT(strlen(c->arena + c->url_off) == c->url_len);
    for (int i = 0; i < c->nhdrs; i++)
        FUZZ_ASSERT(strlen(c->arena + c->hdrs[i].name_off) == c->hdrs[i].name_len);

    emit(t, "req %s ", method);
    emit_bytes(t, c->arena + c->url_off, c->url_len);
    emit(t, " ka=%d chunked=%d cl=%lld\n", c->keep_alive, conn_is_chunked(c),
         (long long)conn_content_length(c));
    for (int i = 0; i < c->nhdrs; i++) {
        emit(t, "  ");
        emit_bytes(t, c->arena + c->hdrs[i].name_off, c->hdrs[i].name_len);
        emit(t, ": ");
        emit_bytes(t, c->arena + c->hdrs[i].val_off, c->hdrs[i].val_len);
        emit(t, "\n");
    }

    if (split_url(c) != 0) {
        fail_request(c, 400);
        return;
    }
    if (conn_header_count(c, "Host") > 1) {
        fail_request(c, 400);
        return;
    }
    if (c->line_bad || !c->line_done) {
        fail_request(c, 400);
        return;
    }
    if (c->head_bad) {
        fail_request(c, 400);
        return;
    }
    for (int i = 0; i < c->nhdrs; i++) {
        if (!http_is_token(c->arena + c->hdrs[i].name_off, c->hdrs[i].name_len)) {
            fail_request(c, 400);
            return;
        }
    }
    const char *te = conn_header(c, "Transfer-Encoding");
    if (te && (conn_header_count(c, "Transfer-Encoding") > 1 || strcasecmp(te, "chunked") != 0)) {
        fail_request(c, 501);
        return;
    }
    const char *expect = conn_header(c, "Expect");
    if (expect && strcasecmp(expect, "100-continue") != 0) {
        respond(c, 417);
        return;
    }
    if (conn_is_chunked(c) && conn_header_count(c, "Content-Length") > 0) {
        fail_request(c, 400);
        return;
    }
    int64_t cl = conn_content_length(c);
    if (cl > 0 && (uint64_t)cl > c->s->max_upload_bytes) {
        respond(c, 413);
        c->close_after = true;
        return;
    }
    if (conn_header_count(c, "Authorization") > 1) {
        fail_request(c, 400);
        return;
    }

    /*
     * The request is accepted from here on (what is left are handler
     * decisions), so what it is made of must be sound.  The header block
     * ended in LF: the parser and a strict peer agree where the body starts.
     */
    FUZZ_ASSERT(c->header_end_lf);
    /* RFC 9110 5.5: no CTL but HTAB in a field value (a NUL would also cut the C string). */
    for (int i = 0; i < c->nhdrs; i++) {
        const unsigned char *v = (const unsigned char *)c->arena + c->hdrs[i].val_off;
        for (uint32_t k = 0; k < c->hdrs[i].val_len; k++) {
            if ((v[k] >= 0x20 && v[k] != 0x7f) || v[k] == '\t')
                continue;
            FUZZ_ASSERT(!"a header value holds a control character");
        }
    }
    /* The request line passes the stricter whole-line check too (conn.c checks its parts). */
    if (!c->line_overflow && !http_request_line_ok(c->line, c->line_len)) {
        fprintf(stderr, "request line accepted by conn.c but not by http_request_line_ok: ");
        fwrite(c->line, 1, c->line_len, stderr);
        fprintf(stderr, "\n");
        FUZZ_ASSERT(!"request line passes conn.c's checks only");
    }

    const char *path = c->arena + c->url_off;
    size_t plen = c->path_len;
    if (plen >= 7 && memcmp(path, "/repos/", 7) == 0) {
        if (artifact_path(c, path + 7, plen - 7) != 0) {
            respond(c, 400);
        } else if (strcmp(method, "PUT") == 0) {
            c->put = true;
            c->body_accepted = true; /* answered at the end of the body */
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

static bool wants_input(const struct conn *c)
{
    if (!c->headers_done)
        return !c->responded;
    if (c->msg_complete || c->body_paused)
        return false;
    if (!conn_has_body(c))
        return true;
    return c->body_accepted && !(c->responded && c->close_after);
}

static void parse_failed(struct conn *c, enum http_errno e)
{
    if (c->parse_status) {
        fail_request(c, c->parse_status);
        return;
    }
    if (e == HPE_HEADER_OVERFLOW)
        fail_request(c, 431);
    else if (e == HPE_INVALID_TRANSFER_ENCODING)
        fail_request(c, 501);
    else
        fail_request(c, 400);
}

static void scan_request_line(struct conn *c, const char *p, size_t n)
{
    for (size_t i = 0; i < n && !c->line_done; i++) {
        char ch = p[i];
        if (ch == ' ' && c->line_tail_len > 0 && c->line_tail[c->line_tail_len - 1] == ' ')
            c->line_bad = true; /* one SP between the parts (RFC 9112 3) */
        if (!c->line_started) {
            if (ch == '\r' || ch == '\n')
                continue;
            c->line_started = true;
        }
        if (ch == '\n') {
            c->line_done = true;
            if (c->line_tail_len > 0 && c->line_tail[c->line_tail_len - 1] == '\r')
                c->line_tail_len--;
            c->line_bad |= !(c->line_tail_len >= 9 &&
                             memcmp(c->line_tail + c->line_tail_len - 9, " HTTP/1.", 8) == 0 &&
                             (c->line_tail[c->line_tail_len - 1] == '0' ||
                              c->line_tail[c->line_tail_len - 1] == '1'));
            if (c->line_len > 0 && c->line[c->line_len - 1] == '\r')
                c->line_len--;
            break;
        }
        if (c->line_tail_len == sizeof(c->line_tail)) {
            memmove(c->line_tail, c->line_tail + 1, sizeof(c->line_tail) - 1);
            c->line_tail_len--;
        }
        c->line_tail[c->line_tail_len++] = ch;
        if (c->line_len < LINE_CAP)
            c->line[c->line_len++] = ch;
        else
            c->line_overflow = true;
    }
}

static void scan_head(struct conn *c, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (c->head_prev_cr && ch != '\n')
            c->head_bad = true;
        if ((ch < 0x20 && ch != '\t' && ch != '\r' && ch != '\n') || ch == 0x7f)
            c->head_bad = true;
        c->head_prev_cr = ch == '\r';
    }
}

static void reset_request(struct conn *c)
{
    c->arena_len = 0;
    c->url_off = c->url_len = c->path_len = c->query_off = 0;
    c->nhdrs = 0;
    c->last_cb = 0;
    c->header_bytes = 0;
    c->parse_status = 0;
    c->pause = PAUSE_NONE;
    c->in_request = c->headers_done = c->msg_complete = false;
    c->body_accepted = c->body_paused = false;
    c->body_bytes = 0;
    memset(&c->chunks, 0, sizeof(c->chunks));
    c->line_tail_len = 0;
    c->line_started = c->line_done = c->line_bad = false;
    c->head_prev_cr = c->head_bad = false;
    c->chunked = false;
    c->declared_length = -1;
    c->status = 0;
    c->responded = c->close_after = c->resp_done = false;
    c->line_len = 0;
    c->line_overflow = false;
    c->chunk_verdict = CHUNK_CHECK_MORE;
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
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    reset_request(c);

    size_t pos = 0, run_end = 0;
    int next_run = 0;
    for (;;) {
        /* conn_process: feed while the request wants input and bytes have arrived. */
        while (wants_input(c)) {
            if (pos == run_end) {
                if (pos == s->len)
                    break;
                size_t n = sliced && s->nruns ? s->runs[next_run++ % s->nruns] : s->len;
                run_end = pos + n < s->len ? pos + n : s->len;
            }
            size_t avail = run_end - pos;
            size_t feed = avail < FEED_MAX ? avail : FEED_MAX;
            const char *p = s->data + pos;
            c->pause = PAUSE_NONE;
            bool in_body = c->headers_done;
            size_t n = http_parser_execute(&c->parser, &settings, p, feed);
            enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
            FUZZ_ASSERT(n <= feed);
            bool framing_ok = true;
            if (!c->line_done)
                scan_request_line(c, p, n);
            if (!in_body) {
                scan_head(c, p, n);
            } else if (conn_is_chunked(c)) {
                c->chunk_verdict = chunk_check_feed(&c->chunks, p, n);
                framing_ok = c->chunk_verdict != CHUNK_CHECK_BAD;
            }
            pos += n;
            if (!framing_ok) {
                fail_request(c, 400);
                break;
            }
            if (e != HPE_OK && e != HPE_PAUSED) {
                parse_failed(c, e);
                break;
            }
            if (e != HPE_PAUSED)
                continue;
            http_parser_pause(&c->parser, 0);
            enum pause_reason why = c->pause;
            c->pause = PAUSE_NONE;
            if (why == PAUSE_HEADERS) {
                /*
                 * on_headers_complete returns before the parser consumes the
                 * header block's last byte: the next feed (and the chunk
                 * check) starts with it.  conn.c rejects the request unless
                 * the byte after the block's last CR is LF; dispatch asserts
                 * that an accepted request's block ended in LF.
                 */
                FUZZ_ASSERT(pos < s->len);
                c->header_end_lf = s->data[pos] == '\n';
                if (c->head_prev_cr && !c->header_end_lf)
                    c->head_bad = true;
                dispatch(c);
            } else if (why == PAUSE_COMPLETE) {
                /*
                 * The parser says the message ends here: the strict check,
                 * fed the same bytes, must agree, or the two disagree about
                 * where the next request starts.
                 */
                if (conn_is_chunked(c))
                    FUZZ_ASSERT(c->chunk_verdict == CHUNK_CHECK_DONE);
                if (c->body_accepted && c->put) {
                    FUZZ_ASSERT(c->body_bytes <= s->max_upload_bytes);
                    emit(t, " body %llu %016llx\n", (unsigned long long)c->body_bytes,
                         (unsigned long long)c->body_hash);
                    respond(c, 201);
                }
            }
        }
        /* The answer is out: what conn.c's write callback and request_done would do. */
        if (c->body_paused) { /* the handler drained its buffer: conn_resume_body */
            c->body_paused = false;
            c->room = s->handler_room;
            continue;
        }
        if (c->resp_done && c->msg_complete && !c->close_after && c->keep_alive) {
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
    else if (c->in_request)
        state = "mid-request";
    emit(t, "end %s\n", state);
    free(c->line);
    free(c->arena);
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
    s.max_url_bytes = 256 + (uint64_t)fz_u8(&f) * 32;     /* config bounds: 256 .. 1M */
    s.max_header_bytes = 1024 + (uint64_t)fz_u8(&f) * 64; /* config bounds: 1K .. 1M */
    s.max_upload_bytes = (uint64_t)fz_u8(&f) * 16;        /* config bounds: 0 .. */
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
