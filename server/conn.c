/*
 * One client connection: the request parser (reqparse.c) over a libevent
 * bufferevent.
 *
 * Bytes are fed to the parser straight from the bufferevent's input buffer in
 * slices of at most FEED_MAX bytes.  The parser stops at three points so
 * that control returns here: when the headers are complete (dispatch to a
 * handler), when a handler's body buffer is full (backpressure: we stop
 * reading until it drains), and when the message is complete (the next
 * pipelined request stays in the input buffer until this response is sent).
 * The socket's read watermark bounds how much unparsed input we hold.
 *
 * A response is finished when the output buffer has drained (the write
 * callback with low watermark 0).  File bodies are queued one block at a time
 * as file segments, so plain connections use sendfile and memory stays
 * bounded whatever the file size.
 */
#include "arca_err.h"
#include "blob.h"
#include "httputil.h"
#include "auth.h"
#include "log.h"
#include "reqparse.h"
#include "server_int.h"
#include "tls.h"
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <http_parser.h> /* http_status_str */
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define FEED_MAX (256u * 1024)
#define READ_HIGH_WATERMARK (2048u * 1024)
#define READ_MIN (16u * 1024)           /* a plain connection's first read; doubles while full */
/* 1 MiB rather than 256 KiB: a 1 GiB upload's event-loop system time 0.46-0.50 -> 0.27 s. */
#define READ_MAX (1024u * 1024)
#define STREAM_QUEUE (8u * BLOB_BLOCK_SIZE) /* file bytes kept queued while streaming */
#define LINGER_NS (5ull * 1000000000) /* an early-answered connection reads on at most this long */
#define LINGER_IDLE_S 2               /* ... and closes after this long without a byte */

struct conn {
    struct worker *w;
    struct conn *prev, *next;
    struct bufferevent *bev;
    char peer[64];
    char peer_ip[48];
    bool tls;               /* HTTPS: no sendfile; bodies stream from bounded buffers */
    struct event *rev;      /* plain: reads the socket (the bufferevent only writes) */
    size_t read_size;       /* plain: bytes the next read asks for */
    struct event *header_timer;
    /* HTTPS: the client certificate, read once at the first request after the handshake. */
    bool handshake_done, cert_read, has_cert, cert_unmapped_logged;
    char cert_cn[TLS_PEER_CN_MAX + 1];   /* "" when the certificate has no plain CN */
    uint8_t cert_sha256[32];

    /* The request being read: parsed and checked in reqparse.c. */
    struct reqparse *rp;
    bool keep_alive;
    uint64_t start_ns;
    char request_id[72];
    struct principal principal;

    /* The handler. */
    const struct handler *h;
    int route;
    void *ctx;
    int async;              /* outstanding async operations */
    bool dead;              /* the socket is gone; freed when async reaches 0 */
    bool abandoned;         /* the parser was stopped with the request unread (fail_request) */
    bool lingering;         /* answered and half-closed: reading and dropping until EOF */
    uint64_t linger_until;

    /* The answer. */
    int status;
    bool responded, close_after, streaming, resp_done;
    bool done_pending;      /* written out; the write callback is deferred to this iteration */
    uint64_t bytes_out;     /* body bytes queued */
    struct evbuffer_file_segment *seg;
    struct blob_blocks *blocks;
    int file_fd;
    uint64_t file_size, file_pos, file_end;
    uint64_t verified_pos;  /* bytes before it are verified; [file_pos, verified_pos) not queued */
    bool copy;              /* blocks are read into scratch and copied out (TLS, small bodies) */
    char file_label[72];    /* names the file in log lines (the blob's SHA-256) */
};

static void conn_process(struct conn *c);
static void conn_release(struct conn *c);
static void request_done(struct conn *c);
static void conn_kick(struct conn *c);

/* ---- request accessors ---- */

const char *conn_method(const struct conn *c)
{
    return reqparse_method(c->rp);
}

bool conn_responded(const struct conn *c)
{
    return c->responded;
}

bool conn_is_head(const struct conn *c)
{
    return reqparse_is_head(c->rp);
}

const char *conn_path(const struct conn *c)
{
    return reqparse_path(c->rp);
}

size_t conn_path_len(const struct conn *c)
{
    return reqparse_path_len(c->rp);
}

const char *conn_query(const struct conn *c)
{
    return reqparse_query(c->rp);
}

const char *conn_header(const struct conn *c, const char *name)
{
    return reqparse_header(c->rp, name);
}

const char *conn_header_nth(const struct conn *c, const char *name, int nth)
{
    int n = reqparse_nheaders(c->rp);
    size_t want = strlen(name);
    for (int i = 0; i < n; i++) {
        const char *hn, *hv;
        size_t hnl, hvl;
        reqparse_header_at(c->rp, i, &hn, &hnl, &hv, &hvl);
        if (hnl == want && strncasecmp(hn, name, want) == 0 && nth-- == 0)
            return hv; /* NUL-terminated in the parser's arena */
    }
    return NULL;
}

int conn_header_count(const struct conn *c, const char *name)
{
    return reqparse_header_count(c->rp, name);
}

int64_t conn_content_length(const struct conn *c)
{
    return reqparse_content_length(c->rp);
}

bool conn_is_chunked(const struct conn *c)
{
    return reqparse_chunked(c->rp);
}

bool conn_has_body(const struct conn *c)
{
    return reqparse_has_body(c->rp);
}

const char *conn_request_id(const struct conn *c)
{
    return c->request_id;
}

const char *conn_peer(const struct conn *c)
{
    return c->peer;
}

const char *conn_actor(const struct conn *c)
{
    return c->principal.actor;
}

const struct principal *conn_principal(const struct conn *c)
{
    return &c->principal;
}

bool conn_authorize(struct conn *c, const char *action, const char *repo)
{
    if (auth_allows(c->w->srv->auth, &c->principal, action, repo))
        return true;
    char scope[AUTH_ACTION_MAX + AUTH_GLOB_MAX + 2];
    snprintf(scope, sizeof(scope), "%s@%s", action, repo ? repo : "*");
    if (!c->principal.authenticated && c->has_cert && !conn_header(c, "Authorization"))
        resp_error(c, 401, "unauthorized", NULL,
                   "the client certificate (%s%s) is not mapped to an identity in [tls.clients]; "
                   "this request needs a credential (scope %s)",
                   c->cert_cn[0] ? "CN " : "no plain CN", c->cert_cn, scope);
    else if (!c->principal.authenticated)
        resp_error(c, 401, "unauthorized", NULL, "this request needs a credential (scope %s)",
                   scope);
    else
        resp_error(c, 403, "forbidden", json_pack("{s:s}", "scope", scope),
                   "%s '%s' lacks scope %s",
                   c->principal.token_id[0] ? "token" : "client certificate", c->principal.actor,
                   scope);
    return false;
}

struct server *conn_server(const struct conn *c)
{
    return c->w->srv;
}

struct worker *conn_worker(const struct conn *c)
{
    return c->w;
}

struct mailbox *conn_mailbox(const struct conn *c)
{
    return c->w->mbox;
}

void conn_set_ctx(struct conn *c, void *ctx)
{
    c->ctx = ctx;
}

void *conn_ctx(const struct conn *c)
{
    return c->ctx;
}

/* ---- responses ---- */

static void refresh_date(struct worker *w)
{
    struct timeval tv;
    event_base_gettimeofday_cached(w->base, &tv);
    if (tv.tv_sec != w->date_secs) {
        w->date_secs = tv.tv_sec;
        time_format_http(tv.tv_sec, w->date);
    }
}

/*
 * Sends what the output buffer holds.  A plain connection writes straight
 * away: an answer that fits the socket buffer (nearly every small one) never
 * arms EPOLLOUT, so it costs one writev and no epoll_ctl; only a short write
 * or a streaming body enables the bufferevent's write side.  The write
 * callback still runs, deferred to this loop iteration, so the end of a
 * request is handled in one place.  TLS connections keep the write side on.
 */
static void conn_kick(struct conn *c)
{
    if (c->tls || !c->bev || c->dead)
        return;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (!c->streaming && evbuffer_get_length(out) > 0) {
        /* The bufferevent freezes the front of its output; thaw it for this write, as it does. */
        evbuffer_unfreeze(out, 1);
        int n = evbuffer_write(out, bufferevent_getfd(c->bev));
        evbuffer_freeze(out, 1);
        if (n > 0) {
            c->done_pending = evbuffer_get_length(out) == 0;
            bufferevent_trigger(c->bev, EV_WRITE,
                                BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
        }
    }
    if (evbuffer_get_length(out) > 0)
        bufferevent_enable(c->bev, EV_WRITE); /* the rest, or an error, on the usual path */
}

void resp_start(struct conn *c, int status)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    c->status = status;
    c->responded = true;
    /* An answer sent before the body was read leaves unread bytes: close after it. */
    if (reqparse_headers_done(c->rp) && conn_has_body(c) && !reqparse_msg_complete(c->rp) &&
        !reqparse_body_accepted(c->rp))
        c->close_after = true;
    refresh_date(c->w);
    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\nDate: %s\r\nServer: arca\r\nX-Request-Id: %s\r\n",
                        status, http_status_str((enum http_status)status), c->w->date,
                        c->request_id);
}

void resp_header(struct conn *c, const char *name, const char *fmt, ...)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    va_list ap;
    evbuffer_add_printf(out, "%s: ", name);
    va_start(ap, fmt);
    evbuffer_add_vprintf(out, fmt, ap);
    va_end(ap);
    evbuffer_add(out, "\r\n", 2);
}

void resp_close_after(struct conn *c)
{
    c->close_after = true;
}

static void end_headers(struct conn *c, uint64_t content_length, bool has_length)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (c->w->draining || c->w->srv->shutting_down)
        c->close_after = true;
    if (has_length)
        evbuffer_add_printf(out, "Content-Length: %llu\r\n", (unsigned long long)content_length);
    if (c->close_after || !c->keep_alive)
        evbuffer_add(out, "Connection: close\r\n\r\n", 21);
    else if (reqparse_http_minor(c->rp) == 0) /* HTTP/1.0 kept open only when it asked */
        evbuffer_add(out, "Connection: keep-alive\r\n\r\n", 26);
    else
        evbuffer_add(out, "\r\n", 2);
}

static bool status_has_body(int status)
{
    return !(status == 204 || status == 304 || (status >= 100 && status < 200));
}

void resp_finish_mem(struct conn *c, const char *content_type, const void *body, size_t len)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (content_type && status_has_body(c->status))
        resp_header(c, "Content-Type", "%s", content_type);
    end_headers(c, len, status_has_body(c->status));
    if (len > 0 && !conn_is_head(c) && status_has_body(c->status)) {
        evbuffer_add(out, body, len);
        c->bytes_out += len;
    }
    c->resp_done = true;
    conn_kick(c);
}

void resp_finish_json(struct conn *c, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (!text) {
        static const char oom[] = "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}";
        resp_finish_mem(c, "application/json", oom, sizeof(oom) - 1);
        return;
    }
    size_t len = strlen(text);
    text[len] = '\n'; /* json_dumps leaves room: overwrite the NUL, length is known */
    resp_finish_mem(c, "application/json", text, len + 1);
    free(text);
}

void resp_json(struct conn *c, int status, json_t *body)
{
    resp_start(c, status);
    resp_finish_json(c, body);
}

json_t *error_json(const char *code, json_t *extra, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_t *err = extra ? extra : json_object();
    json_object_set_new(err, "code", json_string(code));
    json_object_set_new(err, "message", json_string(msg));
    return json_pack("{s:o}", "error", err);
}

void resp_error(struct conn *c, int status, const char *code, json_t *extra, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (status >= 500)
        LOG_E("req %s: %d %s: %s", c->request_id, status, code, msg);
    else
        LOG_D("req %s: %d %s: %s", c->request_id, status, code, msg);
    resp_start(c, status);
    if (status == 401)
        resp_header(c, "WWW-Authenticate", "Bearer realm=\"arca\", Basic realm=\"arca\"");
    resp_finish_json(c, error_json(code, extra, "%s", msg));
}

/* Frees what a file answer holds (the segment owns and closes the fd). */
static void stream_cleanup(struct conn *c)
{
    if (c->seg) {
        evbuffer_file_segment_free(c->seg);
        c->seg = NULL;
    } else if (c->file_fd >= 0) {
        close(c->file_fd);
    }
    c->file_fd = -1;
    if (c->blocks) {
        blob_blocks_cleanup(c->blocks);
        free(c->blocks);
        c->blocks = NULL;
    }
    c->streaming = false;
    c->copy = false;
}

/*
 * Reads (copy mode) and verifies the block holding verified_pos; moves
 * verified_pos to the end of that block within the range.  In copy mode the
 * block's bytes are left in scratch for queue_verified.  0, or ARCA_E_CORRUPT
 * / -errno (logged) with verified_pos unchanged.
 */
static int verify_block(struct conn *c)
{
    uint64_t block = c->verified_pos / BLOB_BLOCK_SIZE;
    uint64_t block_end = (block + 1) * BLOB_BLOCK_SIZE;
    if (block_end > c->file_end)
        block_end = c->file_end;
    int rc = 0;
    /*
     * pread into scratch (on this VM a copy into a reused buffer is ~4x
     * cheaper than hashing a fresh mapping, docs/PERFORMANCE.md).  Without
     * block sums only copy mode needs the bytes; the block is read whole.
     */
    if (c->blocks || c->copy)
        rc = blob_check_block(c->file_fd, c->file_size, c->blocks, (uint32_t)block,
                              c->w->scratch);
    if (rc != 0) {
        if (rc == ARCA_E_CORRUPT)
            atomic_fetch_add(&c->w->srv->metrics.corrupt_detected, 1);
        LOG_E("req %s: block %llu of blob %s (%s) failed verification: %s", c->request_id,
              (unsigned long long)block, c->file_label, conn_path(c), arca_strerror(rc));
        return rc;
    }
    c->verified_pos = block_end;
    return 0;
}

/* Queues the verified bytes not yet queued: from scratch in copy mode, else as one segment. */
static void queue_verified(struct conn *c)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    uint64_t n = c->verified_pos - c->file_pos;
    if (n == 0)
        return;
    if (c->copy) {
        evbuffer_add(out, (char *)c->w->scratch + (c->file_pos % BLOB_BLOCK_SIZE), n);
    } else if (evbuffer_add_file_segment(out, c->seg, (ev_off_t)c->file_pos, (ev_off_t)n) != 0) {
        c->file_end = c->verified_pos = c->file_pos; /* cannot queue: end short, then close */
        c->close_after = true;
        return;
    }
    c->file_pos = c->verified_pos;
    c->bytes_out += n;
}

/* How much may be queued ahead of the socket: file segments cost no memory, copies do. */
static size_t queue_limit(const struct conn *c)
{
    return c->copy ? 2u * BLOB_BLOCK_SIZE : STREAM_QUEUE;
}

/*
 * Keeps a streaming answer fed (from the write callback).  Segment mode
 * verifies several blocks and queues them as one sendfile; copy mode works a
 * block at a time through scratch.  A bad block ends the body at the last
 * verified byte and closes the connection once that is out: the client sees a
 * short body, never bad bytes.
 */
static void stream_fill(struct conn *c)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (c->copy)
        queue_verified(c); /* what sits in scratch goes out before scratch is reused */
    while (c->verified_pos < c->file_end &&
           evbuffer_get_length(out) + (c->verified_pos - c->file_pos) < queue_limit(c)) {
        if (verify_block(c) != 0) {
            c->file_end = c->verified_pos;
            c->close_after = true;
            break;
        }
        if (c->copy)
            queue_verified(c);
    }
    queue_verified(c);
    if (c->file_pos >= c->file_end)
        c->streaming = false;
}

int resp_file_open(struct conn *c, int fd, uint64_t size, uint64_t off, uint64_t len,
                   struct blob_blocks *blocks, const char *label)
{
    snprintf(c->file_label, sizeof(c->file_label), "%s", label ? label : "-");
    c->file_fd = fd;
    c->blocks = blocks;
    c->file_size = size;
    c->file_pos = c->verified_pos = off;
    c->file_end = off + len;
    /* Copy mode over TLS, and for a small body (one write instead of headers + sendfile). */
    c->copy = c->tls || (len <= 64 * 1024 && len > 0 &&
                         off / BLOB_BLOCK_SIZE == (off + len - 1) / BLOB_BLOCK_SIZE);
    int rc = 0;
    if (len > 0)
        rc = verify_block(c); /* the first block: a bad one here still gets a clean 500 */
    if (rc == 0 && !c->copy && len > 0) {
        c->seg = evbuffer_file_segment_new(fd, 0, (ev_off_t)size, EVBUF_FS_CLOSE_ON_FREE);
        if (!c->seg)
            rc = -ENOMEM;
    }
    if (rc != 0)
        stream_cleanup(c);
    return rc;
}

void resp_file_send(struct conn *c)
{
    end_headers(c, c->file_end - c->file_pos, true);
    c->resp_done = true;
    if (conn_is_head(c) || c->file_end == c->file_pos) {
        stream_cleanup(c);
        conn_kick(c);
        return;
    }
    c->streaming = true;
    stream_fill(c);
    conn_kick(c);
}

/* ---- body flow control ---- */

void conn_accept_body(struct conn *c)
{
    reqparse_accept_body(c->rp);
    const char *expect = conn_header(c, "Expect");
    if (expect && strcasecmp(expect, "100-continue") == 0 && reqparse_http_minor(c->rp) >= 1 &&
        !reqparse_msg_complete(c->rp)) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        bufferevent_write(c->bev, cont, sizeof(cont) - 1);
        conn_kick(c);
    }
}

void conn_resume_body(struct conn *c)
{
    if (!reqparse_body_paused(c->rp))
        return;
    reqparse_resume_body(c->rp);
    conn_process(c);
}

void conn_async_begin(struct conn *c)
{
    c->async++;
}

bool conn_async_end(struct conn *c)
{
    c->async--;
    if (c->dead && c->async == 0) {
        conn_release(c);
        return false;
    }
    return !c->dead;
}

/* ---- reading ---- */

/*
 * Plain connections read the socket themselves rather than through the
 * bufferevent: libevent 2.1's evbuffer_read asks FIONREAD first and then
 * reads at most 4 KiB, two system calls per 4 KiB of an upload.  Here one
 * readv takes what fits, up to READ_MAX, and the read size adapts: it
 * doubles while reads come back full (a streaming body) and falls back
 * when they do not (small requests keep small buffers).  The read event
 * carries the idle timeout, as the bufferevent's read timeout would.
 */
static void eventcb(struct bufferevent *bev, short what, void *arg);

static void read_on(struct conn *c)
{
    if (c->tls) {
        bufferevent_enable(c->bev, EV_READ);
        return;
    }
    struct timeval idle = {(time_t)c->w->srv->cfg.idle_timeout, 0};
    event_add(c->rev, &idle); /* (re)starts the idle clock; no epoll_ctl when already on */
}

static void read_off(struct conn *c)
{
    if (c->tls)
        bufferevent_disable(c->bev, EV_READ);
    else
        event_del(c->rev);
}

static void linger_read(struct conn *c, evutil_socket_t fd, short what);

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    if (c->lingering) {
        linger_read(c, fd, what);
        return;
    }
    if (what & EV_TIMEOUT) {
        eventcb(c->bev, BEV_EVENT_TIMEOUT | BEV_EVENT_READING, c);
        return;
    }
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t have = evbuffer_get_length(in);
    if (have >= READ_HIGH_WATERMARK) { /* the parser has not taken what is here yet */
        conn_process(c);
        return;
    }
    size_t want = READ_HIGH_WATERMARK - have < c->read_size ? READ_HIGH_WATERMARK - have
                                                             : c->read_size;
    struct evbuffer_iovec v[2];
    /* The bufferevent freezes the end of its input; thaw it for this read, as it does. */
    evbuffer_unfreeze(in, 0);
    int nv = evbuffer_reserve_space(in, (ev_ssize_t)want, v, 2);
    ssize_t n = -1;
    int err = ENOMEM;
    if (nv > 0) {
        struct iovec iov[2];
        size_t room = 0;
        for (int i = 0; i < nv; i++) {
            iov[i].iov_base = v[i].iov_base;
            iov[i].iov_len = v[i].iov_len;
            room += v[i].iov_len;
        }
        if (room > want) { /* the reservation may offer more than asked: read only want */
            size_t left = want;
            for (int i = 0; i < nv; i++) {
                iov[i].iov_len = iov[i].iov_len < left ? iov[i].iov_len : left;
                left -= iov[i].iov_len;
            }
        }
        n = readv(fd, iov, nv);
        err = errno;
        if (n > 0) {
            size_t left = (size_t)n;
            for (int i = 0; i < nv; i++) {
                v[i].iov_len = iov[i].iov_len < left ? iov[i].iov_len : left;
                left -= v[i].iov_len;
            }
            evbuffer_commit_space(in, v, nv);
        }
    }
    evbuffer_freeze(in, 0);
    if (n > 0) {
        if ((size_t)n == want && c->read_size < READ_MAX)
            c->read_size *= 2;
        else if ((size_t)n < want / 4 && c->read_size > READ_MIN)
            c->read_size /= 2;
        conn_process(c);
    } else if (n == 0 || (err != EAGAIN && err != EWOULDBLOCK && err != EINTR)) {
        read_off(c); /* an end or an error is reported once, as the bufferevent does */
        eventcb(c->bev, (n == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR) | BEV_EVENT_READING, c);
    }
}

/* ---- lifecycle ---- */

static void reset_request(struct conn *c)
{
    if (c->h && c->h->on_free && c->ctx)
        c->h->on_free(c);
    c->ctx = NULL;
    c->h = NULL;
    reqparse_reset(c->rp);
    c->status = 0;
    c->responded = c->streaming = c->resp_done = false;
    c->bytes_out = 0;
    stream_cleanup(c);
    c->request_id[0] = '\0';
    memset(&c->principal, 0, sizeof(c->principal));
}

static void conn_unlink(struct conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else if (c->w->conns == c)
        c->w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

static void maybe_finish_drain(struct worker *w)
{
    if (w->draining && !w->conns)
        event_base_loopexit(w->base, NULL);
}

/*
 * Closes the socket and frees the connection; when async work still holds
 * it, only the socket goes now and the rest when the work ends.
 */
static void conn_release(struct conn *c)
{
    if (c->header_timer) {
        event_free(c->header_timer);
        c->header_timer = NULL;
    }
    if (c->rev) {
        event_free(c->rev);
        c->rev = NULL;
    }
    if (c->bev) {
        bufferevent_free(c->bev);
        c->bev = NULL;
        atomic_fetch_sub(&c->w->srv->metrics.connections, 1);
    }
    c->dead = true;
    c->lingering = false;
    if (c->async > 0)
        return;
    struct worker *w = c->w;
    reset_request(c);
    conn_unlink(c);
    reqparse_free(c->rp);
    free(c);
    maybe_finish_drain(w);
}

/*
 * A connection answered before its request body was read (413, 500 while
 * streaming) closes gently, as nginx's lingering close does: the answer is
 * out, the write side is shut (FIN), and what the client still sends is read
 * and dropped until it stops, for at most LINGER_NS.  Closing at once with
 * unread bytes sends an RST, and a client whose stack takes the RST before it
 * reads the answer never sees why its upload failed.  Plain connections only
 * (TLS ones close as before).  Async work still out for the request (an
 * upload's lanes) finds the request answered and does nothing more; the
 * connection is freed when both the lingering and that work are over.
 */
static void linger_start(struct conn *c)
{
    int fd = c->bev ? bufferevent_getfd(c->bev) : -1;
    if (c->tls || c->w->draining || fd < 0 || shutdown(fd, SHUT_WR) != 0) {
        conn_release(c);
        return;
    }
    c->lingering = true;
    c->linger_until = time_mono_ns() + LINGER_NS;
    if (c->header_timer)
        evtimer_del(c->header_timer);
    bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    struct evbuffer *in = bufferevent_get_input(c->bev);
    evbuffer_drain(in, evbuffer_get_length(in));
    struct timeval idle = {LINGER_IDLE_S, 0};
    event_add(c->rev, &idle);
}

static void linger_read(struct conn *c, evutil_socket_t fd, short what)
{
    char buf[16384];
    uint64_t now = time_mono_ns();
    if ((what & EV_TIMEOUT) || now >= c->linger_until) {
        conn_release(c);
        return;
    }
    /* Idle for LINGER_IDLE_S, but never past linger_until. */
    uint64_t left = c->linger_until - now;
    struct timeval idle = {LINGER_IDLE_S, 0};
    if (left < (uint64_t)LINGER_IDLE_S * 1000000000)
        idle = (struct timeval){(time_t)(left / 1000000000),
                                (suseconds_t)(left % 1000000000 / 1000)};
    for (int i = 0; i < 64; i++) { /* at most 1 MiB per wakeup: others get their turn */
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n > 0)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            break;
        conn_release(c); /* the client closed (or the socket failed): done */
        return;
    }
    event_add(c->rev, &idle);
}

static void access_log(struct conn *c)
{
    uint64_t dur = time_mono_ns() - c->start_ns;
    struct server *srv = c->w->srv;
    metrics_observe(&srv->metrics, c->route, c->status, dur);
    atomic_fetch_add_explicit(&srv->metrics.bytes_out, c->bytes_out, memory_order_relaxed);
    if (srv->cfg.access_log && log_current_level >= LOG_INFO)
        log_write(LOG_INFO, "access %s %s %s %d in=%llu out=%llu %.3fms rid=%s actor=%s",
                  c->peer, reqparse_headers_done(c->rp) ? conn_method(c) : "-",
                  reqparse_target_len(c->rp) ? conn_path(c) : "-", c->status,
                  (unsigned long long)reqparse_body_bytes(c->rp), (unsigned long long)c->bytes_out,
                  (double)dur / 1e6, c->request_id,
                  c->principal.actor[0] ? c->principal.actor : "-");
}

/* The response has been written out completely. */
static void request_done(struct conn *c)
{
    access_log(c);
    bool close_now = c->close_after || !c->keep_alive || c->w->draining;
    if (close_now || c->async > 0) {
        /* Async work still holding the request (an upload cut short) ends with the connection. */
        if (c->abandoned || evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
            linger_start(c); /* the client may still be sending: no reset under its feet */
        else
            conn_release(c);
        return;
    }
    reset_request(c);
    if (!c->tls)
        bufferevent_disable(c->bev, EV_WRITE); /* drained: the next answer writes directly */
    read_on(c);
    conn_process(c);
}

/* Sends an error for a request that failed while being parsed, then closes. */
static void fail_request(struct conn *c, int status, const char *code, const char *msg)
{
    if (c->responded) { /* already answering: just close once that is out */
        c->close_after = true;
        return;
    }
    if (c->request_id[0] == '\0')
        worker_request_id(c->w, c->request_id, sizeof(c->request_id));
    c->close_after = true;
    c->keep_alive = false;
    c->abandoned = true;
    reqparse_stop(c->rp);
    read_off(c);
    resp_error(c, status, code, NULL, "%s", msg);
}

static void set_request_id(struct conn *c)
{
    const char *rid = conn_header(c, "X-Request-Id");
    if (rid && *rid && strlen(rid) <= 64 &&
        strspn(rid, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") ==
            strlen(rid)) {
        snprintf(c->request_id, sizeof(c->request_id), "%s", rid);
    } else {
        worker_request_id(c->w, c->request_id, sizeof(c->request_id));
    }
}

void worker_request_id(struct worker *w, char *buf, size_t len)
{
    snprintf(buf, len, "%s-%d-%llx", w->srv->rid_prefix, w->id,
             (unsigned long long)++w->next_req);
}

/* An auth.failure event is a synced write: it goes to the pool, not the event loop. */
struct failure_job {
    struct iojob job;
    repo_db *db;
    char actor[16], addr[64], rid[72], reason[160], token_id[TOKEN_ID_LEN + 1];
};

static void failure_work(struct iojob *job)
{
    struct failure_job *f = (struct failure_job *)job;
    struct actor_ctx who = {f->actor, f->addr, f->rid};
    repo_auth_failure(f->db, &who, f->reason, f->token_id[0] ? f->token_id : NULL);
}

static void failure_done(struct iojob *job)
{
    free(job);
}

static void record_auth_failure(struct conn *c, const char *why)
{
    LOG_I("req %s: authentication failed from %s: %s", c->request_id, c->peer, why);
    struct failure_job *f = calloc(1, sizeof(*f));
    if (!f)
        return;
    f->job = (struct iojob){.work = failure_work, .done = failure_done, .mbox = c->w->mbox};
    f->db = c->w->srv->db;
    snprintf(f->actor, sizeof(f->actor), "anonymous");
    snprintf(f->addr, sizeof(f->addr), "%s", c->peer);
    snprintf(f->rid, sizeof(f->rid), "%s", c->request_id);
    snprintf(f->reason, sizeof(f->reason), "%s", why);
    snprintf(f->token_id, sizeof(f->token_id), "%s", c->principal.token_id);
    iopool_submit(c->w->srv->pool, &f->job);
}

/* Reads the verified client certificate of an HTTPS connection, once. */
static void read_peer_cert(struct conn *c)
{
    c->cert_read = true;
    SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
    c->has_cert = ssl && tls_peer_cert(ssl, c->cert_cn, sizeof(c->cert_cn), c->cert_sha256) == 0;
}

/*
 * Authenticates the request: by its Authorization header when it has one
 * (a token wins over the connection's certificate), else by the connection's
 * verified client certificate when there is one.  As auth_authenticate.
 */
static int authenticate(struct conn *c, const char **why)
{
    auth *a = c->w->srv->auth;
    const char *authz = conn_header(c, "Authorization");
    if (c->tls && !c->cert_read)
        read_peer_cert(c);
    *why = NULL;
    if (authz || !c->has_cert)
        return auth_authenticate(a, authz, c->peer_ip, &c->principal, why);
    struct auth_cert cert = {c->cert_cn[0] ? c->cert_cn : NULL, {0}};
    memcpy(cert.sha256, c->cert_sha256, sizeof(cert.sha256));
    if (auth_authenticate_cert(a, &cert, &c->principal) != 0 && !c->cert_unmapped_logged) {
        char hex[65];
        hex_encode(c->cert_sha256, sizeof(c->cert_sha256), hex);
        LOG_I("req %s: %s: client certificate CN '%s' sha256 %s is not mapped in [tls.clients]; "
              "its requests are anonymous", c->request_id, c->peer, c->cert_cn, hex);
        c->cert_unmapped_logged = true;
    }
    return 0;
}

static void dispatch(struct conn *c)
{
    if (c->header_timer)
        evtimer_del(c->header_timer);
    c->keep_alive = reqparse_keep_alive(c->rp);
    set_request_id(c);
    struct reqparse_verdict v;
    enum reqparse_action action = reqparse_check(c->rp, &v);
    if (action == REQPARSE_FAIL) { /* too malformed to route: counted as "other" */
        fail_request(c, v.status, v.code, v.message);
        return;
    }
    /*
     * Routed before anything else can refuse it, so that a 413, 417, 401 or
     * 429 is counted under its route.  The handler runs only once authenticated.
     */
    const struct handler *h = router_match(c, &c->route);
    if (action == REQPARSE_REFUSE) { /* 417 */
        c->h = &notfound_handler;
        resp_error(c, v.status, v.code, NULL, "%s", v.message);
        return;
    }
    if (action == REQPARSE_REFUSE_CLOSE) { /* 413 before the body */
        resp_error(c, v.status, v.code, NULL, "%s", v.message);
        c->close_after = true;
        return;
    }
    const char *why = NULL;
    int arc = authenticate(c, &why);
    if (arc == ARCA_E_LIMITED) {
        resp_start(c, 429);
        resp_header(c, "Retry-After", "%d", AUTH_FAILURE_WINDOW_MS / 1000);
        resp_finish_json(c, error_json("too_many_requests", NULL, "%s", why));
        return;
    }
    if (arc == ARCA_E_INVALID) {
        record_auth_failure(c, why);
        resp_error(c, 401, "unauthorized", NULL, "%s", why);
        return;
    }
    if (arc < 0) {
        resp_error(c, 500, "internal", NULL, "authentication failed: %s", arca_strerror(arc));
        return;
    }
    c->h = h;
    c->h->on_headers(c);
}

/*
 * Whether the parser should be fed now (reqparse_wants_input): the next
 * pipelined request waits until this one's answer is out.
 */
static bool wants_input(const struct conn *c)
{
    if (!c->bev || c->dead)
        return false;
    return reqparse_wants_input(c->rp, c->responded, c->close_after);
}

/* The body sink reqparse feeds an accepted body to: the handler's on_body. */
static int body_to_handler(void *arg, const char *data, size_t len)
{
    struct conn *c = arg;
    return c->h && c->h->on_body ? c->h->on_body(c, data, len) : 0;
}

/* Feeds buffered input to the parser for as long as the request state allows. */
static void conn_process(struct conn *c)
{
    while (wants_input(c)) {
        struct evbuffer *in = bufferevent_get_input(c->bev);
        struct evbuffer_iovec v;
        if (evbuffer_get_length(in) == 0 || evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        size_t feed = v.iov_len < FEED_MAX ? v.iov_len : FEED_MAX;
        bool was_in_request = reqparse_in_request(c->rp);
        if (!was_in_request) {
            /* Until routed, a request is "other": one refused before that, even at its
             * first byte, is not counted under the previous request's route. */
            c->route = ROUTE_OTHER;
            c->start_ns = time_mono_ns();
            if (c->header_timer) {
                /* The header clock starts with the first byte of a request. */
                struct timeval tv = {(time_t)c->w->srv->cfg.header_timeout, 0};
                evtimer_add(c->header_timer, &tv);
            }
        }
        uint64_t body_before = reqparse_body_bytes(c->rp);
        size_t n;
        enum reqparse_event ev = reqparse_feed(c->rp, v.iov_base, feed, &n);
        evbuffer_drain(in, n);
        atomic_fetch_add_explicit(&c->w->srv->metrics.bytes_in,
                                  reqparse_body_bytes(c->rp) - body_before, memory_order_relaxed);
        if (ev == REQPARSE_ERROR) {
            struct reqparse_verdict verdict;
            reqparse_error(c->rp, &verdict);
            fail_request(c, verdict.status, verdict.code, verdict.message);
            break;
        }
        if (ev == REQPARSE_HEADERS)
            dispatch(c);
        else if (ev == REQPARSE_COMPLETE && reqparse_body_accepted(c->rp) && c->h &&
                 c->h->on_complete)
            c->h->on_complete(c);
    }
    if (!c->bev)
        return;
    if (c->dead) {
        if (c->async == 0)
            conn_release(c);
        return;
    }
    /*
     * Read from the socket only while the parser wants bytes: that is the
     * backpressure.  An answer already written out ends in this loop
     * iteration and reading resumes then: leave the read side alone rather
     * than disable and re-enable it (each costs an epoll_ctl).
     */
    if (wants_input(c))
        read_on(c);
    else if (!c->done_pending)
        read_off(c);
}

/* ---- bufferevent callbacks ---- */

static void readcb(struct bufferevent *bev, void *arg)
{
    conn_process(arg);
}

static void writecb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    c->done_pending = false;
    if (c->dead) {
        if (c->async == 0)
            conn_release(c);
        return;
    }
    if (c->streaming) {
        stream_fill(c);
        return;
    }
    if (!c->resp_done || evbuffer_get_length(bufferevent_get_output(bev)) > 0)
        return;
    if (reqparse_msg_complete(c->rp)) {
        request_done(c);
    } else if (c->close_after) {
        access_log(c);
        linger_start(c); /* body bytes may still be on their way */
    }
    /* else: answered early but still reading an accepted body; done at on_complete. */
}

static void eventcb(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        c->handshake_done = true; /* a TLS handshake finished */
        return;
    }
    if (c->tls && !c->handshake_done && (what & BEV_EVENT_ERROR)) {
        /* Refused client certificates show up here: say why, for the operator. */
        char why[256];
        unsigned long e = bufferevent_get_openssl_error(bev);
        LOG_I("%s: TLS handshake failed: %s", c->peer,
              tls_handshake_failure(bufferevent_openssl_get_ssl(bev), e, why, sizeof(why)));
        while (bufferevent_get_openssl_error(bev))
            ;
    }
    if (what & BEV_EVENT_TIMEOUT) {
        if ((what & BEV_EVENT_READING) && reqparse_in_request(c->rp) && !c->responded) {
            LOG_I("%s: request timed out waiting for the client", c->peer);
            fail_request(c, 408, "timeout", "the request did not arrive in time");
            bufferevent_set_timeouts(c->bev, NULL, NULL);
            return;
        }
        conn_release(c);
        return;
    }
    if ((what & BEV_EVENT_EOF) && reqparse_msg_complete(c->rp) && c->responded) {
        /* The client half-closed after its request: finish the answer, then close. */
        c->close_after = true;
        return;
    }
    if (reqparse_in_request(c->rp) && !c->resp_done)
        LOG_I("%s: connection closed mid-request (%s)", c->peer,
              (what & BEV_EVENT_EOF) ? "eof" : "error");
    if (c->responded && c->resp_done && c->status)
        access_log(c);
    conn_release(c);
}

static void header_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    if (reqparse_headers_done(c->rp) || c->responded)
        return;
    if (!reqparse_in_request(c->rp)) {
        /* Nothing of a request arrived (a TLS client stuck before or in its handshake): no
         * answer can even be delivered, so just close. */
        LOG_I("%s: no request within %llus; closing", c->peer,
              (unsigned long long)c->w->srv->cfg.header_timeout);
        conn_release(c);
        return;
    }
    LOG_I("%s: headers not complete after %llus; closing", c->peer,
          (unsigned long long)c->w->srv->cfg.header_timeout);
    fail_request(c, 408, "timeout", "the request headers did not arrive in time");
}

void conn_accept(struct worker *w, int fd, const char *peer, const char *peer_ip, SSL *ssl)
{
    struct conn *c = calloc(1, sizeof(*c));
    struct reqparse_limits lim = {w->srv->cfg.max_url_bytes, w->srv->cfg.max_header_bytes,
                                  w->srv->cfg.max_upload_bytes};
    if (!c || reqparse_new(&lim, body_to_handler, c, &c->rp) != 0) {
        free(c);
        if (ssl)
            SSL_free(ssl);
        close(fd);
        return;
    }
    c->w = w;
    c->file_fd = -1;
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    snprintf(c->peer_ip, sizeof(c->peer_ip), "%s", peer_ip);
    c->tls = ssl != NULL;
    c->bev = ssl ? bufferevent_openssl_socket_new(w->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                  BEV_OPT_CLOSE_ON_FREE)
                 : bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
    c->header_timer = evtimer_new(w->base, header_timeout_cb, c);
    if (!ssl)
        c->rev = event_new(w->base, fd, EV_READ | EV_PERSIST, on_readable, c);
    if (!c->bev || !c->header_timer || (!ssl && !c->rev)) {
        if (c->bev) {
            bufferevent_free(c->bev);
        } else {
            if (ssl)
                SSL_free(ssl);
            close(fd);
        }
        if (c->header_timer)
            event_free(c->header_timer);
        if (c->rev)
            event_free(c->rev);
        reqparse_free(c->rp);
        free(c);
        return;
    }
    atomic_fetch_add(&w->srv->metrics.connections, 1);
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    struct timeval idle = {(time_t)w->srv->cfg.idle_timeout, 0};
    bufferevent_set_timeouts(c->bev, &idle, &idle);
    bufferevent_setwatermark(c->bev, EV_READ, 0, READ_HIGH_WATERMARK);
    bufferevent_set_max_single_read(c->bev, READ_HIGH_WATERMARK); /* TLS: records in bulk */
    c->read_size = READ_MIN;
    /* Downloads: one sendfile may send everything queued (file segments cost no memory). */
    bufferevent_set_max_single_write(c->bev, STREAM_QUEUE);
    /*
     * The write callback runs after every write that leaves the output at or below
     * half the stream queue, so a download is topped up (and its next blocks hashed)
     * while the kernel still has data to send, not after the socket ran dry.
     */
    bufferevent_setwatermark(c->bev, EV_WRITE, STREAM_QUEUE / 2, 0);
    bufferevent_setcb(c->bev, readcb, writecb, eventcb, c);
    /* Plain: reading is on_readable's, and writing is on only while output waits (conn_kick). */
    if (ssl)
        bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    else
        read_on(c);
    if (ssl) {
        /* A peer that just closes is an EOF, not an error; and the handshake plus the
         * first header block must arrive within header_timeout. */
        bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
        struct timeval tv = {(time_t)w->srv->cfg.header_timeout, 0};
        evtimer_add(c->header_timer, &tv);
    }
}

void conn_drain_all(struct worker *w)
{
    struct conn *c = w->conns;
    while (c) {
        struct conn *next = c->next;
        if (c->lingering || (!reqparse_in_request(c->rp) && !c->responded && c->async == 0))
            conn_release(c);
        else
            c->close_after = true;
        c = next;
    }
    maybe_finish_drain(w);
}

void conn_free_all(struct worker *w)
{
    while (w->conns) {
        struct conn *c = w->conns;
        c->async = 0; /* the pool is stopped: no job will come back */
        conn_release(c);
    }
}
