/*
 * Request parsing: http-parser callbacks, the strict checks Debian's
 * non-strict http-parser lacks, header collection and limits (reqparse.h).
 *
 * The parser is paused at three points so that control returns to the
 * caller: when the head is complete, when the body sink is full, and when
 * the message is complete (the next pipelined request stays unconsumed).
 * The raw bytes the parser consumed are scanned again for what it does not
 * check, in the same call, so a check never depends on how input was split.
 */
#include "reqparse.h"

#include "httputil.h"

#include <errno.h>
#include <http_parser.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_HEADERS 128

enum pause_reason { PAUSE_NONE, PAUSE_HEADERS, PAUSE_BODY, PAUSE_COMPLETE };

struct hdr {
    uint32_t name_off, name_len, val_off, val_len;
};

struct reqparse {
    http_parser parser;
    struct reqparse_limits lim;
    reqparse_body_fn body_fn;
    void *body_arg;

    /* The arena holds the URL and the header text, each NUL-terminated. */
    char *arena;
    size_t arena_len, arena_cap;
    uint32_t url_off, url_len;
    uint32_t path_len;  /* the path part of the URL (after reqparse_check) */
    uint32_t query_off; /* into the arena; "" when none */
    struct hdr hdrs[MAX_HEADERS];
    int nhdrs;
    int last_cb; /* 0 none, 1 field, 2 value */
    uint64_t header_bytes;
    int parse_status; /* 414/431/413 decided inside a parser callback */
    enum pause_reason pause;
    bool in_request; /* the first byte of a request has arrived */
    bool headers_done, msg_complete;
    bool body_accepted, body_paused;
    bool framing_bad;     /* the strict chunk check failed */
    bool method_unknown;  /* HPE_INVALID_METHOD on a token: an unknown method, not garbage */
    enum http_errno perr; /* http-parser's error, when it stopped on one */
    uint64_t body_bytes;
    struct chunk_check chunks; /* strict framing check of a chunked body */
    int chunk_state;
    char line_tail[12]; /* the last bytes of the request line, to check the version */
    uint8_t line_tail_len;
    bool line_started, line_done, line_bad;
    bool version_bad; /* HTTP/D.D, but not 1.0 or 1.1: 505 */
    bool head_prev_cr, head_bad; /* the raw header block: every CR before LF, no CTL */
    bool chunked;            /* framing as the headers declared it (trailers cannot change it) */
    int64_t declared_length; /* Content-Length as the headers declared it, -1 if none */
};

/* ---- the arena ---- */

static int arena_append(struct reqparse *rp, const char *data, size_t len)
{
    if (rp->arena_len + len + 1 > rp->arena_cap) {
        size_t cap = rp->arena_cap ? rp->arena_cap : 1024;
        while (cap < rp->arena_len + len + 1)
            cap *= 2;
        char *p = realloc(rp->arena, cap);
        if (!p)
            return -1;
        rp->arena = p;
        rp->arena_cap = cap;
    }
    memcpy(rp->arena + rp->arena_len, data, len);
    rp->arena_len += len;
    rp->arena[rp->arena_len] = '\0';
    return 0;
}

/* Ends the current string in the arena: a NUL that the next append will not overwrite. */
static int arena_terminate(struct reqparse *rp)
{
    if (arena_append(rp, "", 0) != 0)
        return -1;
    rp->arena_len++;
    return 0;
}

/* ---- parser callbacks ---- */

static int on_message_begin(http_parser *p)
{
    struct reqparse *rp = p->data;
    rp->in_request = true;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct reqparse *rp = p->data;
    rp->url_len += (uint32_t)len;
    rp->header_bytes += len;
    if (rp->url_len > rp->lim.max_url_bytes) {
        rp->parse_status = 414;
        return -1;
    }
    if (rp->header_bytes > rp->lim.max_header_bytes) { /* the target counts toward the head */
        rp->parse_status = 431;
        return -1;
    }
    return arena_append(rp, at, len);
}

static void finish_header_value(struct reqparse *rp)
{
    if (rp->last_cb == 2) {
        struct hdr *h = &rp->hdrs[rp->nhdrs - 1];
        /* Trim trailing whitespace (RFC 9110 field values exclude it). */
        while (h->val_len > 0 && (rp->arena[h->val_off + h->val_len - 1] == ' ' ||
                                  rp->arena[h->val_off + h->val_len - 1] == '\t'))
            h->val_len--;
        rp->arena[h->val_off + h->val_len] = '\0';
    }
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct reqparse *rp = p->data;
    rp->header_bytes += len;
    if (rp->header_bytes > rp->lim.max_header_bytes) {
        rp->parse_status = 431;
        return -1;
    }
    if (rp->headers_done)
        return 0; /* a trailer field: counted, never stored or acted on */
    if (rp->last_cb != 1) {
        if (rp->last_cb == 0 && arena_terminate(rp) != 0) /* ends the URL */
            return -1;
        if (rp->last_cb == 2) {
            finish_header_value(rp);
            if (arena_terminate(rp) != 0)
                return -1;
        }
        if (rp->nhdrs == MAX_HEADERS) {
            rp->parse_status = 431;
            return -1;
        }
        rp->hdrs[rp->nhdrs].name_off = (uint32_t)rp->arena_len;
        rp->hdrs[rp->nhdrs].name_len = 0;
        rp->nhdrs++;
        rp->last_cb = 1;
    }
    rp->hdrs[rp->nhdrs - 1].name_len += (uint32_t)len;
    return arena_append(rp, at, len);
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct reqparse *rp = p->data;
    rp->header_bytes += len;
    if (rp->header_bytes > rp->lim.max_header_bytes) {
        rp->parse_status = 431;
        return -1;
    }
    if (rp->headers_done)
        return 0;
    if (rp->last_cb != 2) {
        if (arena_terminate(rp) != 0) /* ends the name */
            return -1;
        rp->hdrs[rp->nhdrs - 1].val_off = (uint32_t)rp->arena_len;
        rp->hdrs[rp->nhdrs - 1].val_len = 0;
        rp->last_cb = 2;
    }
    rp->hdrs[rp->nhdrs - 1].val_len += (uint32_t)len;
    return arena_append(rp, at, len);
}

static int on_headers_complete(http_parser *p)
{
    struct reqparse *rp = p->data;
    if (rp->last_cb == 0 && arena_terminate(rp) != 0)
        return -1;
    finish_header_value(rp);
    if (arena_terminate(rp) != 0)
        return -1;
    rp->headers_done = true;
    /* Captured now: http-parser clears F_CHUNKED on a Transfer-Encoding trailer. */
    rp->chunked = (p->flags & F_CHUNKED) != 0;
    rp->declared_length =
        !rp->chunked && p->content_length != ULLONG_MAX && reqparse_header(rp, "Content-Length")
            ? (int64_t)p->content_length
            : -1;
    rp->pause = PAUSE_HEADERS;
    http_parser_pause(p, 1);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct reqparse *rp = p->data;
    rp->body_bytes += len;
    if (rp->body_bytes > rp->lim.max_upload_bytes) {
        rp->parse_status = 413;
        return -1;
    }
    if (rp->body_accepted && rp->body_fn && rp->body_fn(rp->body_arg, at, len) != 0) {
        rp->body_paused = true;
        rp->pause = PAUSE_BODY;
        http_parser_pause(p, 1);
    }
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct reqparse *rp = p->data;
    rp->msg_complete = true;
    rp->pause = PAUSE_COMPLETE;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- the raw-byte checks ---- */

/*
 * Keeps the tail of the request line as the parser consumes it, so that
 * reqparse_check can insist on "HTTP/1.0" or "HTTP/1.1": the non-strict
 * http-parser accepts any letters there.  Leading CR/LF (allowed before a
 * request) are skipped.
 */
static void scan_request_line(struct reqparse *rp, const char *p, size_t n)
{
    for (size_t i = 0; i < n && !rp->line_done; i++) {
        char ch = p[i];
        if (ch == ' ' && rp->line_tail_len > 0 && rp->line_tail[rp->line_tail_len - 1] == ' ')
            rp->line_bad = true; /* one SP between the parts (RFC 9112 3) */
        if (!rp->line_started) {
            if (ch == '\r' || ch == '\n')
                continue;
            rp->line_started = true;
        }
        if (ch == '\n') {
            rp->line_done = true;
            if (rp->line_tail_len > 0 && rp->line_tail[rp->line_tail_len - 1] == '\r')
                rp->line_tail_len--;
            /* The tail must be " HTTP/1.x"; http-parser has checked the method and target. */
            const char *t = rp->line_tail + (rp->line_tail_len >= 9 ? rp->line_tail_len - 9 : 0);
            bool well_formed = rp->line_tail_len >= 9 && memcmp(t, " HTTP/", 6) == 0 &&
                               t[6] >= '0' && t[6] <= '9' && t[7] == '.' && t[8] >= '0' &&
                               t[8] <= '9';
            if (!well_formed)
                rp->line_bad = true;
            else if (!(t[6] == '1' && (t[8] == '0' || t[8] == '1')))
                rp->version_bad = true;
            break;
        }
        if (rp->line_tail_len == sizeof(rp->line_tail)) {
            memmove(rp->line_tail, rp->line_tail + 1, sizeof(rp->line_tail) - 1);
            rp->line_tail_len--;
        }
        rp->line_tail[rp->line_tail_len++] = ch;
    }
}

/*
 * Checks the raw bytes of the head (request line and header block) as the
 * parser consumes them, where the non-strict http-parser does not: every CR
 * must be followed by LF, and no control character but HTAB may appear (a
 * header value's first byte is not checked by the parser at all).
 */
static void scan_head(struct reqparse *rp, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (rp->head_prev_cr && ch != '\n')
            rp->head_bad = true;
        if ((ch < 0x20 && ch != '\t' && ch != '\r' && ch != '\n') || ch == 0x7f)
            rp->head_bad = true;
        rp->head_prev_cr = ch == '\r';
    }
}

/* ---- feeding ---- */

enum reqparse_event reqparse_feed(struct reqparse *rp, const char *data, size_t len,
                                  size_t *consumed)
{
    rp->pause = PAUSE_NONE;
    bool in_body = rp->headers_done;
    size_t n = http_parser_execute(&rp->parser, &settings, data, len);
    enum http_errno e = HTTP_PARSER_ERRNO(&rp->parser);
    *consumed = n;
    if (!rp->line_done)
        scan_request_line(rp, data, n);
    if (e == HPE_INVALID_METHOD && !rp->line_done) {
        /*
         * An unknown method (501) rather than no request line at all (400): http-parser
         * stops at the first byte that fits no method it knows ("FOO" at 'F', "GE /" at
         * the SP), and the bytes before it (line_tail) and that byte are still a method
         * token, or a non-empty token and its SP.  Only those bytes are looked at, so the
         * answer does not depend on how the request was split into reads.
         */
        bool token = n < len;
        for (size_t i = 0; token && i < rp->line_tail_len; i++)
            token = http_is_token(rp->line_tail + i, 1);
        rp->method_unknown = token && (http_is_token(data + n, 1) ||
                                       (data[n] == ' ' && rp->line_tail_len > 0));
    }
    if (!in_body) {
        scan_head(rp, data, n);
    } else if (rp->chunked) {
        rp->chunk_state = chunk_check_feed(&rp->chunks, data, n);
        if (rp->chunk_state == CHUNK_CHECK_TOO_BIG) {
            rp->parse_status = 413; /* a chunk size says so: before its data is read */
            return REQPARSE_ERROR;
        }
        if (rp->chunk_state == CHUNK_CHECK_BAD) {
            rp->framing_bad = true;
            return REQPARSE_ERROR;
        }
    }
    if (e != HPE_OK && e != HPE_PAUSED) {
        rp->perr = e;
        return REQPARSE_ERROR;
    }
    if (e != HPE_PAUSED)
        return REQPARSE_MORE;
    http_parser_pause(&rp->parser, 0);
    enum pause_reason why = rp->pause;
    rp->pause = PAUSE_NONE;
    switch (why) {
    case PAUSE_HEADERS:
        /*
         * The parser hands back the byte after the header block's last CR
         * (the callback ran while it looked at that byte): it must be LF, or
         * the parser and a strict peer disagree on where the body starts.
         */
        if (n >= len || (rp->head_prev_cr && data[n] != '\n'))
            rp->head_bad = true;
        return REQPARSE_HEADERS;
    case PAUSE_BODY: return REQPARSE_BODY_FULL;
    case PAUSE_COMPLETE: return REQPARSE_COMPLETE;
    case PAUSE_NONE: break;
    }
    return REQPARSE_MORE;
}

static void verdict(struct reqparse_verdict *v, enum reqparse_action action, int status,
                    const char *code, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void verdict(struct reqparse_verdict *v, enum reqparse_action action, int status,
                    const char *code, const char *fmt, ...)
{
    va_list ap;
    v->action = action;
    v->status = status;
    v->code = code;
    va_start(ap, fmt);
    vsnprintf(v->message, sizeof(v->message), fmt, ap);
    va_end(ap);
}

void reqparse_error(const struct reqparse *rp, struct reqparse_verdict *v)
{
    if (rp->framing_bad) {
        verdict(v, REQPARSE_FAIL, 400, "bad_request", "malformed chunked encoding");
        return;
    }
    switch (rp->parse_status) {
    case 414:
        verdict(v, REQPARSE_FAIL, 414, "uri_too_long", "the request target is too long");
        return;
    case 431:
        verdict(v, REQPARSE_FAIL, 431, "header_too_large", "the request headers are too large");
        return;
    case 413:
        verdict(v, REQPARSE_FAIL, 413, "payload_too_large", "the body is over the upload limit");
        return;
    }
    if (rp->perr == HPE_HEADER_OVERFLOW)
        verdict(v, REQPARSE_FAIL, 431, "header_too_large", "the request headers are too large");
    else if (rp->perr == HPE_INVALID_TRANSFER_ENCODING)
        verdict(v, REQPARSE_FAIL, 501, "not_implemented",
                "only chunked Transfer-Encoding is supported");
    else if (rp->perr == HPE_INVALID_METHOD && rp->method_unknown)
        verdict(v, REQPARSE_FAIL, 501, "not_implemented",
                "unknown method; this server knows GET, HEAD, PUT, POST, PATCH and DELETE");
    else if (rp->perr == HPE_UNEXPECTED_CONTENT_LENGTH)
        verdict(v, REQPARSE_FAIL, 400, "bad_request",
                "conflicting Content-Length headers, or Content-Length with Transfer-Encoding");
    else
        verdict(v, REQPARSE_FAIL, 400, "bad_request", "malformed HTTP request: %s",
                http_errno_description(rp->perr));
}

/* Splits the URL into path and query; handles absolute-form targets.  0 or -1. */
static int split_url(struct reqparse *rp)
{
    char *url = rp->arena + rp->url_off;
    if (url[0] != '/') {
        /* absolute-form (RFC 9112 3.2.2): skip scheme and authority. */
        char *p = strstr(url, "://");
        if (!p)
            return -1;
        p = strchr(p + 3, '/');
        if (!p)
            return -1;
        rp->url_off = (uint32_t)(p - rp->arena);
        url = p;
    }
    char *q = strchr(url, '?');
    if (q) {
        *q = '\0';
        rp->path_len = (uint32_t)(q - url);
        rp->query_off = (uint32_t)(q + 1 - rp->arena);
    } else {
        rp->path_len = (uint32_t)strlen(url);
        rp->query_off = (uint32_t)(url + rp->path_len - rp->arena); /* the NUL: "" */
    }
    return 0;
}

enum reqparse_action reqparse_check(struct reqparse *rp, struct reqparse_verdict *v)
{
    if (split_url(rp) != 0) {
        verdict(v, REQPARSE_FAIL, 400, "bad_request", "the request target is not a path");
        return v->action;
    }
    if (memchr(rp->arena + rp->url_off, '#', rp->path_len)) {
        /* A fragment is never sent (RFC 9112 3.2); a '#' in a name is sent as %23. */
        verdict(v, REQPARSE_FAIL, 400, "bad_request",
                "the request target contains '#'; send a '#' in a name as %%23");
        return v->action;
    }
    if (reqparse_header_count(rp, "Host") > 1) {
        verdict(v, REQPARSE_FAIL, 400, "bad_request", "more than one Host header");
        return v->action;
    }
    if (rp->line_done && !rp->line_bad && !rp->version_bad && rp->parser.http_major == 1 &&
        rp->parser.http_minor == 1 && reqparse_header_count(rp, "Host") == 0) {
        verdict(v, REQPARSE_FAIL, 400, "bad_request", "an HTTP/1.1 request needs a Host header");
        return v->action;
    }
    if (rp->version_bad && !rp->line_bad && rp->line_done) {
        verdict(v, REQPARSE_FAIL, 505, "http_version_not_supported",
                "only HTTP/1.0 and HTTP/1.1 are served");
        return v->action;
    }
    if (rp->line_bad || !rp->line_done) {
        verdict(v, REQPARSE_FAIL, 400, "bad_request",
                "malformed request line (expected METHOD TARGET HTTP/1.x)");
        return v->action;
    }
    if (rp->head_bad) {
        verdict(v, REQPARSE_FAIL, 400, "bad_request",
                "malformed header block (a CR without LF, or a control character)");
        return v->action;
    }
    for (int i = 0; i < rp->nhdrs; i++) {
        if (!http_is_token(rp->arena + rp->hdrs[i].name_off, rp->hdrs[i].name_len)) {
            verdict(v, REQPARSE_FAIL, 400, "bad_request", "malformed header name");
            return v->action;
        }
    }
    const char *te = reqparse_header(rp, "Transfer-Encoding");
    if (te && rp->parser.http_major == 1 && rp->parser.http_minor == 0) {
        /* RFC 9112 6.1: the framing of an HTTP/1.0 message with Transfer-Encoding is faulty
         * (a 1.0 proxy in front would not have seen chunks): refuse it and close. */
        verdict(v, REQPARSE_FAIL, 400, "bad_request",
                "Transfer-Encoding in an HTTP/1.0 request; send Content-Length");
        return v->action;
    }
    if (te &&
        (reqparse_header_count(rp, "Transfer-Encoding") > 1 || strcasecmp(te, "chunked") != 0)) {
        verdict(v, REQPARSE_FAIL, 501, "not_implemented",
                "only 'Transfer-Encoding: chunked' is supported");
        return v->action;
    }
    const char *expect = reqparse_header(rp, "Expect");
    if (expect && strcasecmp(expect, "100-continue") != 0) {
        verdict(v, REQPARSE_REFUSE, 417, "expectation_failed",
                "only 'Expect: 100-continue' is supported");
        return v->action;
    }
    if (rp->chunked && reqparse_header_count(rp, "Content-Length") > 0) {
        verdict(v, REQPARSE_FAIL, 400, "bad_request", "both Transfer-Encoding and Content-Length");
        return v->action;
    }
    int64_t cl = rp->declared_length;
    if (cl > 0 && (uint64_t)cl > rp->lim.max_upload_bytes) {
        verdict(v, REQPARSE_REFUSE_CLOSE, 413, "payload_too_large",
                "the body (%lld bytes) is over the limit of %llu bytes", (long long)cl,
                (unsigned long long)rp->lim.max_upload_bytes);
        return v->action;
    }
    if (reqparse_header_count(rp, "Authorization") > 1) {
        verdict(v, REQPARSE_FAIL, 400, "bad_request", "more than one Authorization header");
        return v->action;
    }
    return REQPARSE_OK;
}

bool reqparse_wants_input(const struct reqparse *rp, bool responded, bool close_after)
{
    if (!rp->headers_done)
        return !responded;
    if (rp->msg_complete || rp->body_paused)
        return false;
    if (!reqparse_has_body(rp))
        return true; /* fed to its end: http-parser keeps the header block's final LF for it */
    return rp->body_accepted && !(responded && close_after);
}

void reqparse_accept_body(struct reqparse *rp)
{
    rp->body_accepted = true;
}

void reqparse_resume_body(struct reqparse *rp)
{
    rp->body_paused = false;
}

void reqparse_stop(struct reqparse *rp)
{
    rp->msg_complete = true;
}

void reqparse_reset(struct reqparse *rp)
{
    rp->arena_len = 0;
    rp->url_off = rp->url_len = rp->path_len = rp->query_off = 0;
    rp->nhdrs = 0;
    rp->last_cb = 0;
    rp->header_bytes = 0;
    rp->parse_status = 0;
    rp->pause = PAUSE_NONE;
    rp->in_request = rp->headers_done = rp->msg_complete = false;
    rp->body_accepted = rp->body_paused = false;
    rp->framing_bad = rp->method_unknown = false;
    rp->perr = HPE_OK;
    rp->body_bytes = 0;
    memset(&rp->chunks, 0, sizeof(rp->chunks));
    rp->chunks.limit = rp->lim.max_upload_bytes;
    rp->chunk_state = CHUNK_CHECK_MORE;
    rp->line_tail_len = 0;
    rp->line_started = rp->line_done = rp->line_bad = rp->version_bad = false;
    rp->head_prev_cr = rp->head_bad = false;
    rp->chunked = false;
    rp->declared_length = -1;
}

int reqparse_new(const struct reqparse_limits *lim, reqparse_body_fn body, void *arg,
                 struct reqparse **out)
{
    struct reqparse *rp = calloc(1, sizeof(*rp));
    if (!rp)
        return -ENOMEM;
    rp->lim = *lim;
    rp->body_fn = body;
    rp->body_arg = arg;
    http_parser_init(&rp->parser, HTTP_REQUEST);
    rp->parser.data = rp;
    reqparse_reset(rp);
    *out = rp;
    return 0;
}

void reqparse_free(struct reqparse *rp)
{
    if (!rp)
        return;
    free(rp->arena);
    free(rp);
}

/* ---- accessors ---- */

const char *reqparse_method(const struct reqparse *rp)
{
    return http_method_str((enum http_method)rp->parser.method);
}

bool reqparse_is_head(const struct reqparse *rp)
{
    return rp->parser.method == HTTP_HEAD;
}

int reqparse_http_minor(const struct reqparse *rp)
{
    return rp->parser.http_minor;
}

bool reqparse_keep_alive(const struct reqparse *rp)
{
    return http_should_keep_alive(&rp->parser) != 0;
}

const char *reqparse_path(const struct reqparse *rp)
{
    return rp->url_len ? rp->arena + rp->url_off : "";
}

size_t reqparse_path_len(const struct reqparse *rp)
{
    return rp->path_len;
}

const char *reqparse_query(const struct reqparse *rp)
{
    return rp->url_len ? rp->arena + rp->query_off : "";
}

size_t reqparse_target_len(const struct reqparse *rp)
{
    return rp->url_len;
}

const char *reqparse_header(const struct reqparse *rp, const char *name)
{
    for (int i = 0; i < rp->nhdrs; i++)
        if (strcasecmp(rp->arena + rp->hdrs[i].name_off, name) == 0)
            return rp->arena + rp->hdrs[i].val_off;
    return NULL;
}

int reqparse_header_count(const struct reqparse *rp, const char *name)
{
    int n = 0;
    for (int i = 0; i < rp->nhdrs; i++)
        if (strcasecmp(rp->arena + rp->hdrs[i].name_off, name) == 0)
            n++;
    return n;
}

int reqparse_nheaders(const struct reqparse *rp)
{
    return rp->nhdrs;
}

void reqparse_header_at(const struct reqparse *rp, int i, const char **name, size_t *name_len,
                        const char **value, size_t *value_len)
{
    *name = rp->arena + rp->hdrs[i].name_off;
    *name_len = rp->hdrs[i].name_len;
    *value = rp->arena + rp->hdrs[i].val_off;
    *value_len = rp->hdrs[i].val_len;
}

uint64_t reqparse_header_bytes(const struct reqparse *rp)
{
    return rp->header_bytes;
}

int64_t reqparse_content_length(const struct reqparse *rp)
{
    return rp->declared_length;
}

bool reqparse_chunked(const struct reqparse *rp)
{
    return rp->chunked;
}

bool reqparse_has_body(const struct reqparse *rp)
{
    return rp->chunked || rp->declared_length > 0;
}

bool reqparse_in_request(const struct reqparse *rp)
{
    return rp->in_request;
}

bool reqparse_headers_done(const struct reqparse *rp)
{
    return rp->headers_done;
}

bool reqparse_msg_complete(const struct reqparse *rp)
{
    return rp->msg_complete;
}

bool reqparse_body_accepted(const struct reqparse *rp)
{
    return rp->body_accepted;
}

bool reqparse_body_paused(const struct reqparse *rp)
{
    return rp->body_paused;
}

uint64_t reqparse_body_bytes(const struct reqparse *rp)
{
    return rp->body_bytes;
}

int reqparse_chunk_state(const struct reqparse *rp)
{
    return rp->chunk_state;
}
