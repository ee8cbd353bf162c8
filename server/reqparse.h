/*
 * Request parsing without I/O: http-parser (Debian's non-strict build) driven
 * with the strict checks it lacks, the header collection and the size
 * limits.  server/conn.c feeds it bytes from a socket; the request fuzzer
 * (tests/fuzz/fuzz_http_request.c) feeds it the fuzzer's bytes, so what the
 * fuzzer finds is what the server does.
 *
 * One struct reqparse reads one connection's requests one after another:
 *
 *   reqparse_feed(data)   consumes bytes and stops at an event:
 *     REQPARSE_HEADERS    the head is complete: reqparse_check(), then route;
 *                         the header accessors are valid until reqparse_reset.
 *     REQPARSE_BODY_FULL  the body sink asked for a pause; feed again after
 *                         reqparse_resume_body.
 *     REQPARSE_COMPLETE   the request, with its body, is complete.  The next
 *                         request's bytes stay unconsumed until reqparse_reset.
 *     REQPARSE_ERROR      malformed or over a limit: reqparse_error() says
 *                         how to answer; the connection must then close.
 *     REQPARSE_MORE       every byte given was consumed; feed more.
 *   reqparse_reset()      after the answer, for the next request.
 *
 * A body is fed only once accepted (reqparse_accept_body): until then
 * reqparse_wants_input is false for a request with a body, so the bytes wait
 * in the caller's buffer (backpressure, and an early answer need not read
 * them).  The sink given at creation receives the accepted body.
 *
 * The strict checks (Debian's http-parser is built with HTTP_PARSER_STRICT=0):
 * the request line is METHOD SP TARGET SP HTTP/1.0 or HTTP/1.1 with single
 * spaces; in the head every CR is followed by LF and no control character but
 * HTAB appears; the byte after the header block's last CR is LF; header names
 * are tokens; a chunked body's framing passes chunk_check_feed (httputil.h);
 * framing is taken from the headers (a Transfer-Encoding trailer cannot change
 * it).  Trailer fields are counted against max_header_bytes, never stored.
 *
 * Not thread-safe: one connection, one thread.
 */
#ifndef ARCA_REQPARSE_H
#define ARCA_REQPARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct reqparse;

struct reqparse_limits {
    uint64_t max_url_bytes;    /* request target; over → 414 */
    uint64_t max_header_bytes; /* target + header names and values (and trailers); over → 431 */
    uint64_t max_upload_bytes; /* body; a Content-Length over it → 413 at check, a body → 413 */
};

/*
 * Receives the pieces of an accepted body in order.  Returns 0 to go on, or
 * nonzero to pause: the feed stops with REQPARSE_BODY_FULL right after this
 * piece (which counts as consumed) until reqparse_resume_body.
 */
typedef int (*reqparse_body_fn)(void *arg, const char *data, size_t len);

enum reqparse_event {
    REQPARSE_MORE,
    REQPARSE_HEADERS,
    REQPARSE_BODY_FULL,
    REQPARSE_COMPLETE,
    REQPARSE_ERROR,
};

/* What to do about a request, from reqparse_check or reqparse_error. */
enum reqparse_action {
    REQPARSE_OK,           /* go on: route the request */
    REQPARSE_FAIL,         /* malformed: answer, then close; read nothing more (reqparse_stop) */
    REQPARSE_REFUSE,       /* answer without routing; the connection lives by the usual rules */
    REQPARSE_REFUSE_CLOSE, /* answer without routing, then close (the body is never read) */
};

struct reqparse_verdict {
    enum reqparse_action action;
    int status;        /* HTTP status of the answer */
    const char *code;  /* the error code of the JSON answer (static) */
    char message[192]; /* for people; never holds request bytes */
};

/*
 * A new parser for one connection.  lim is copied; body/arg receive accepted
 * bodies (body may be NULL: bodies are then read and dropped).  0 or -ENOMEM.
 */
int reqparse_new(const struct reqparse_limits *lim, reqparse_body_fn body, void *arg,
                 struct reqparse **out);
/* Frees rp and everything it holds (NULL is a no-op). */
void reqparse_free(struct reqparse *rp);

/*
 * Feeds up to len bytes; *consumed says how many were used (the rest, if
 * any, must be given again later).  Returns the event that stopped the feed.
 */
enum reqparse_event reqparse_feed(struct reqparse *rp, const char *data, size_t len,
                                  size_t *consumed);

/* After REQPARSE_ERROR: the answer (action REQPARSE_FAIL). */
void reqparse_error(const struct reqparse *rp, struct reqparse_verdict *v);

/*
 * After REQPARSE_HEADERS: checks the head (request line, header block, header
 * names, framing headers, Expect, Content-Length against max_upload_bytes,
 * one Host, one Authorization) and splits the target into path and query
 * (the absolute form loses its scheme and authority).  Returns v->action;
 * REQPARSE_OK leaves v untouched.
 */
enum reqparse_action reqparse_check(struct reqparse *rp, struct reqparse_verdict *v);

/*
 * Whether the caller should feed bytes now, given whether it has started
 * answering and whether it will close after the answer.  Before the head is
 * complete: unless answered.  After it: not once the message is complete or
 * the body is paused; a request without a body is fed to its end; a body
 * only once accepted, and not when the answer is out and the connection will
 * close anyway.
 */
bool reqparse_wants_input(const struct reqparse *rp, bool responded, bool close_after);

/* Lets the body be fed to the sink. */
void reqparse_accept_body(struct reqparse *rp);
/* Ends a pause the sink asked for. */
void reqparse_resume_body(struct reqparse *rp);
/* Reads nothing more of this request (it failed): the message counts as complete. */
void reqparse_stop(struct reqparse *rp);
/* Forgets the request, ready for the next one on the same connection. */
void reqparse_reset(struct reqparse *rp);

/* ---- the request (valid after REQPARSE_HEADERS, until reqparse_reset) ---- */

/* "GET", "PUT", ... */
const char *reqparse_method(const struct reqparse *rp);
bool reqparse_is_head(const struct reqparse *rp);
int reqparse_http_minor(const struct reqparse *rp);
/* What the version and Connection headers say about keep-alive. */
bool reqparse_keep_alive(const struct reqparse *rp);
/*
 * The request target: before reqparse_check the whole target as received;
 * after it the path alone.  "" when no target byte has arrived.  Valid until
 * reqparse_reset (also after an error, for logging).
 */
const char *reqparse_path(const struct reqparse *rp);
size_t reqparse_path_len(const struct reqparse *rp);
/* The query without '?', or "" (after reqparse_check). */
const char *reqparse_query(const struct reqparse *rp);
/* Bytes of target received (0: none yet). */
size_t reqparse_target_len(const struct reqparse *rp);

/* The first value of a header (case-insensitive name), or NULL. */
const char *reqparse_header(const struct reqparse *rp, const char *name);
/* How many times a header appears. */
int reqparse_header_count(const struct reqparse *rp, const char *name);
/* Header i (0 .. reqparse_nheaders-1) as received, values without trailing blanks. */
int reqparse_nheaders(const struct reqparse *rp);
void reqparse_header_at(const struct reqparse *rp, int i, const char **name, size_t *name_len,
                        const char **value, size_t *value_len);
/* Target, header names and values counted so far (against max_header_bytes). */
uint64_t reqparse_header_bytes(const struct reqparse *rp);

/* The Content-Length the headers declared, or -1 when none (or chunked). */
int64_t reqparse_content_length(const struct reqparse *rp);
bool reqparse_chunked(const struct reqparse *rp);
/* Chunked, or a Content-Length above 0. */
bool reqparse_has_body(const struct reqparse *rp);

/* ---- progress ---- */

bool reqparse_in_request(const struct reqparse *rp); /* a byte of a request has arrived */
bool reqparse_headers_done(const struct reqparse *rp);
bool reqparse_msg_complete(const struct reqparse *rp); /* or stopped */
bool reqparse_body_accepted(const struct reqparse *rp);
bool reqparse_body_paused(const struct reqparse *rp);
/* Body bytes parsed so far (accepted or not). */
uint64_t reqparse_body_bytes(const struct reqparse *rp);
/* The strict chunk check's verdict so far: CHUNK_CHECK_MORE, _DONE or _BAD (httputil.h). */
int reqparse_chunk_state(const struct reqparse *rp);

#endif
