/*
 * The connection API that handlers see.  A struct conn is one client
 * connection on one worker's event loop; it carries one request at a time
 * (pipelined requests wait in the input buffer until the previous response is
 * finished, so responses keep request order).  Everything here runs on the
 * connection's event loop thread.
 *
 * A handler's life for one request:
 *   on_headers(c)          route matched, headers complete.  Either answer now
 *                          (resp_*), start async work and answer later, or
 *                          accept a body (conn_accept_body).
 *   on_body(c, data, len)  for each piece of body; return 1 to pause reading
 *                          until conn_resume_body(c).
 *   on_complete(c)         the whole body arrived.
 *   on_free(c)             the request is over (answered, or the connection
 *                          died): free the handler context.  Always called
 *                          exactly once when a handler context was set.
 */
#ifndef ARCA_HTTP_H
#define ARCA_HTTP_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct conn;
struct server;
struct principal;
struct blob_blocks;
struct mailbox;

struct handler {
    const char *route;  /* metrics label */
    void (*on_headers)(struct conn *c);
    int (*on_body)(struct conn *c, const char *data, size_t len);
    void (*on_complete)(struct conn *c);
    void (*on_free)(struct conn *c);
};

/* Request accessors. */
const char *conn_method(const struct conn *c);          /* "GET", "PUT", ... */
bool conn_is_head(const struct conn *c);
/* True once an answer has been started (async callbacks check before answering). */
bool conn_responded(const struct conn *c);
const char *conn_path(const struct conn *c);            /* raw path, without the query */
size_t conn_path_len(const struct conn *c);
const char *conn_query(const struct conn *c);           /* raw query without '?', or "" */
/* The first value of a header (case-insensitive name), or NULL. */
const char *conn_header(const struct conn *c, const char *name);
/* The nth (0-based) value of a repeated header, or NULL. */
const char *conn_header_nth(const struct conn *c, const char *name, int nth);
/* How many times a header appears. */
int conn_header_count(const struct conn *c, const char *name);
/* The declared Content-Length, or -1 when none. */
int64_t conn_content_length(const struct conn *c);
bool conn_is_chunked(const struct conn *c);
bool conn_has_body(const struct conn *c);

const char *conn_request_id(const struct conn *c);
const char *conn_peer(const struct conn *c);
const char *conn_actor(const struct conn *c);
const struct principal *conn_principal(const struct conn *c);
/*
 * True when the caller may do action on repo (NULL: not tied to one).
 * Otherwise answers 401 (no credential) or 403 naming the missing scope, and
 * returns false.
 */
bool conn_authorize(struct conn *c, const char *action, const char *repo);
struct server *conn_server(const struct conn *c);
struct mailbox *conn_mailbox(const struct conn *c);

void conn_set_ctx(struct conn *c, void *ctx);
void *conn_ctx(const struct conn *c);

/* Accepts the request body: answers Expect: 100-continue, then feeds on_body. */
void conn_accept_body(struct conn *c);
void conn_resume_body(struct conn *c);
/*
 * Marks the connection as waiting for async work (an I/O pool job): if the
 * client goes away meanwhile, the connection is kept until conn_async_end().
 * conn_async_end returns false when the connection died meanwhile; the
 * caller must then not touch c again (it has been freed).
 */
void conn_async_begin(struct conn *c);
bool conn_async_end(struct conn *c);

/* Answers.  Each request gets exactly one answer. */
void resp_start(struct conn *c, int status);
void resp_header(struct conn *c, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Ends headers and sends a body from memory (copied); on HEAD only the headers. */
void resp_finish_mem(struct conn *c, const char *content_type, const void *body, size_t len);
/*
 * A file answer in two steps, so that a damaged file is found before any
 * header is out.  resp_file_open takes ownership of fd and blocks (may be
 * NULL: no verification) whatever it returns, and verifies the first window
 * of [off, off+len); it writes nothing.  0, or ARCA_E_CORRUPT / -errno (then
 * answer with an error).  On 0: resp_start, resp_header..., then
 * resp_file_send, which ends the headers (Content-Length: len) and streams
 * the rest, verifying each block before it is queued; a bad later block cuts
 * the body short and closes the connection.
 */
int resp_file_open(struct conn *c, int fd, uint64_t size, uint64_t off, uint64_t len,
                   struct blob_blocks *blocks, const char *label);
void resp_file_send(struct conn *c);
/* Sends JSON (takes a reference of body: json_decref'd here). */
void resp_json(struct conn *c, int status, json_t *body);
/*
 * Sends {"error": {"code", "message", ...extra}} with status.  extra (may be
 * NULL) is an object whose fields are merged in; its reference is stolen.
 */
void resp_error(struct conn *c, int status, const char *code, json_t *extra, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Ends an answer begun with resp_start with a JSON body (reference stolen). */
void resp_finish_json(struct conn *c, json_t *body);
/* Builds {"error": {"code", "message", ...extra}} (extra's reference stolen; may be NULL). */
json_t *error_json(const char *code, json_t *extra, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* After this answer the connection closes; call before resp_start/resp_error so the
 * answer carries "Connection: close". */
void resp_close_after(struct conn *c);

#endif
