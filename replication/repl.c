/*
 * The pullers (see repl.h): one thread per peer, each a loop of
 *   page of events after the cursor → the page's missing blobs, fetched in
 *   parallel → each event applied in order → cursor persisted → wait for more.
 */
#include "repl.h"

#include "arca_err.h"
#include "audit.h"
#include "blob.h"
#include "hlc.h"
#include "log.h"
#include "replica.h"
#include "repo.h"
#include "util.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A page of events is at most 4 MiB on the server side; a little room beyond that. */
#define PAGE_MAX (8u << 20)
#define ERR_BODY_MAX 2048
/* Blobs of a page fetched at once (replication.parallel_fetches, at most this). */
#define PREFETCH_MAX 16

struct peer {
    struct repl *r;
    struct config_peer cfg;
    char auth_header[192]; /* "Authorization: Bearer " + the token */
    pthread_t thread;
    bool started;
    CURL *curl;
    pthread_mutex_t mu; /* guards st */
    struct repl_peer_status st;
    uint64_t failures; /* consecutive, for the back-off */
    uint64_t checkpoints_at_ms; /* the last exchange of origin checkpoints */
    bool own_ahead_reported;    /* own_event_check said it once */
    uint64_t started_ms;        /* when the puller started (wall clock) */
    CURL *xfer[PREFETCH_MAX];   /* the prefetchers' handles (kept for keep-alive), made lazily */
};

struct repl {
    repo_db *db;
    blob_store *bs;
    char centre[64];
    uint64_t poll_ms, batch, retry_max_s, connect_timeout_s, parallel;
    atomic_bool stop;
    bool curl_init;
    pthread_mutex_t wait_mu;
    pthread_cond_t wait_cv;
    /* Blobs being fetched right now: two pullers never write one partial file. */
    pthread_mutex_t fetch_mu;
    pthread_cond_t fetch_cv;
    uint8_t (*fetching)[32];
    size_t nfetching;
    size_t npeers;
    struct peer *peers;
};

int repl_protocol_version(void)
{
    return 1;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Sleeps up to ms, waking early on repl_stop or a repair request. */
static void nap(struct repl *r, uint64_t ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until); /* wait_cv runs on the monotonic clock */
    until.tv_sec += (time_t)(ms / 1000);
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    /* A broadcast (stop, a repair asked for) ends every nap early; pullers re-check. */
    pthread_mutex_lock(&r->wait_mu);
    if (!atomic_load(&r->stop))
        pthread_cond_timedwait(&r->wait_cv, &r->wait_mu, &until);
    pthread_mutex_unlock(&r->wait_mu);
}

static void peer_error(struct peer *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void peer_error(struct peer *p, const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&p->mu);
    va_start(ap, fmt);
    vsnprintf(p->st.last_error, sizeof(p->st.last_error), fmt, ap);
    va_end(ap);
    p->st.last_error_ms = now_ms();
    p->st.errors++;
    LOG_W("replication: peer %s: %s", p->cfg.name, p->st.last_error);
    pthread_mutex_unlock(&p->mu);
}

/* ---- HTTP --------------------------------------------------------------------------------- */

struct membuf {
    char *data;
    size_t len, cap, max;
    bool overflow;
};

static size_t mem_write(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct membuf *m = arg;
    size_t n = size * nmemb;
    if (m->len + n + 1 > m->max) {
        m->overflow = true;
        return 0;
    }
    if (m->len + n + 1 > m->cap) {
        size_t cap = m->cap ? m->cap : 65536;
        while (cap < m->len + n + 1)
            cap *= 2;
        char *d = realloc(m->data, cap);
        if (!d)
            return 0;
        m->data = d;
        m->cap = cap;
    }
    memcpy(m->data + m->len, ptr, n);
    m->len += n;
    m->data[m->len] = '\0';
    return n;
}

/* Response headers a puller reads. */
struct resp_hdrs {
    uint64_t log_size;
    bool have_log_size;
    uint64_t puts_after, put_bytes_after; /* the peer's uploads after the cursor */
    bool have_backlog;
    bool more;
    uint64_t range_start;
    bool have_range;
};

static bool header_u64(const char *line, size_t n, const char *name, uint64_t *out)
{
    size_t k = strlen(name);
    if (n <= k + 1 || strncasecmp(line, name, k) != 0 || line[k] != ':')
        return false;
    char buf[32];
    size_t i = k + 1, j = 0;
    while (i < n && line[i] == ' ')
        i++;
    while (i < n && j + 1 < sizeof(buf) && line[i] >= '0' && line[i] <= '9')
        buf[j++] = line[i++];
    buf[j] = '\0';
    if (j == 0)
        return false;
    *out = strtoull(buf, NULL, 10);
    return true;
}

static size_t on_header(char *line, size_t size, size_t nitems, void *arg)
{
    struct resp_hdrs *h = arg;
    size_t n = size * nitems;
    uint64_t v;
    if (header_u64(line, n, "X-Audit-Size", &v)) {
        h->log_size = v;
        h->have_log_size = true;
    } else if (header_u64(line, n, "X-Arca-Puts-After", &v)) {
        h->puts_after = v;
        h->have_backlog = true;
    } else if (header_u64(line, n, "X-Arca-Put-Bytes-After", &v)) {
        h->put_bytes_after = v;
    } else if (header_u64(line, n, "X-Next-After", &v)) {
        h->more = true;
    } else if (n > 20 && strncasecmp(line, "Content-Range: bytes ", 21) == 0) {
        h->range_start = strtoull(line + 21, NULL, 10);
        h->have_range = true;
    }
    return n;
}

/* Aborts a transfer when the server stops. */
static int on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)dt, (void)dn, (void)ut, (void)un;
    struct peer *p = arg;
    return atomic_load(&p->r->stop) ? 1 : 0;
}

/* Sets up handle c for a GET of url from p; the caller adds its write target. */
static void request_setup(struct peer *p, CURL *c, const char *url, struct curl_slist *hdrs,
                          struct resp_hdrs *rh)
{
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long)p->r->connect_timeout_s);
    /* A peer that stops sending for 30 s is given up on (the transfer resumes later). */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 30L);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, p);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, rh);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    if (p->cfg.ca_file[0])
        curl_easy_setopt(c, CURLOPT_CAINFO, p->cfg.ca_file);
    if (p->cfg.cert_file[0]) {
        curl_easy_setopt(c, CURLOPT_SSLCERT, p->cfg.cert_file);
        curl_easy_setopt(c, CURLOPT_SSLKEY, p->cfg.key_file);
    }
}

static struct curl_slist *base_headers(struct peer *p)
{
    struct curl_slist *h = NULL;
    if (p->auth_header[0])
        h = curl_slist_append(h, p->auth_header);
    return curl_slist_append(h, "Accept: application/x-ndjson, application/json");
}

/* GET url from p into body (bounded by body->max), its headers into rh.  *status: HTTP status. */
static CURLcode get_into(struct peer *p, const char *url, struct membuf *body,
                         struct resp_hdrs *rh, long *status)
{
    struct curl_slist *h = base_headers(p);
    request_setup(p, p->curl, url, h, rh);
    curl_easy_setopt(p->curl, CURLOPT_WRITEFUNCTION, mem_write);
    curl_easy_setopt(p->curl, CURLOPT_WRITEDATA, body);
    CURLcode cc = curl_easy_perform(p->curl);
    *status = 0;
    curl_easy_getinfo(p->curl, CURLINFO_RESPONSE_CODE, status);
    curl_slist_free_all(h);
    return cc;
}

/* Describes a failed answer: "HTTP 403: <the server's message>". */
static void http_error(struct peer *p, const char *what, long status, const struct membuf *body,
                       CURLcode cc)
{
    if (cc != CURLE_OK) {
        peer_error(p, "%s: %s", what, curl_easy_strerror(cc));
        return;
    }
    const char *msg = "";
    json_t *j = body && body->data ? json_loads(body->data, 0, NULL) : NULL;
    json_t *m = json_object_get(json_object_get(j, "error"), "message");
    if (json_is_string(m))
        msg = json_string_value(m);
    peer_error(p, "%s: HTTP %ld%s%.200s", what, status, *msg ? ": " : "", msg);
    json_decref(j);
}

static void set_connected(struct peer *p, bool ok)
{
    pthread_mutex_lock(&p->mu);
    p->st.connected = ok;
    if (ok)
        p->st.last_contact_ms = now_ms();
    pthread_mutex_unlock(&p->mu);
}

/* ---- blobs -------------------------------------------------------------------------------- */

/* Waits until no other puller fetches sha256, then claims it. */
static void fetch_claim(struct repl *r, const uint8_t sha256[32])
{
    pthread_mutex_lock(&r->fetch_mu);
    for (;;) {
        bool busy = false;
        for (size_t i = 0; i < r->nfetching && !busy; i++)
            busy = memcmp(r->fetching[i], sha256, 32) == 0;
        if (!busy)
            break;
        pthread_cond_wait(&r->fetch_cv, &r->fetch_mu);
    }
    memcpy(r->fetching[r->nfetching++], sha256, 32);
    pthread_mutex_unlock(&r->fetch_mu);
}

static void fetch_release(struct repl *r, const uint8_t sha256[32])
{
    pthread_mutex_lock(&r->fetch_mu);
    for (size_t i = 0; i < r->nfetching; i++) {
        if (memcmp(r->fetching[i], sha256, 32) == 0) {
            memmove(r->fetching[i], r->fetching[r->nfetching - 1], 32);
            r->nfetching--;
            break;
        }
    }
    pthread_cond_broadcast(&r->fetch_cv);
    pthread_mutex_unlock(&r->fetch_mu);
}

struct blob_sink {
    struct peer *p;
    CURL *curl;
    blob_writer *w;
    struct resp_hdrs *rh;
    uint64_t have;       /* bytes the partial file held before this transfer */
    uint64_t got;        /* bytes this transfer wrote */
    uint64_t size;       /* the blob's size, from the event */
    bool checked;        /* the answer's status and range were checked */
    bool range_ignored;  /* a 200 to a ranged request: start over */
    int werr;
    struct membuf err;   /* the body of an error answer */
};

static size_t blob_write(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct blob_sink *s = arg;
    size_t n = size * nmemb;
    long status = 0;
    if (!s->checked) {
        curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &status);
        s->checked = true;
        if (status != 200 && status != 206) {
            s->err.max = ERR_BODY_MAX;
            s->checked = false;
            return mem_write(ptr, size, nmemb, &s->err) == n ? n : 0;
        }
        if (s->have > 0 && (status == 200 || !s->rh->have_range || s->rh->range_start != s->have)) {
            s->range_ignored = true;
            return 0;
        }
    } else if (s->err.max) {
        return mem_write(ptr, size, nmemb, &s->err) == n ? n : 0;
    }
    if (s->have + s->got + n > s->size) {
        s->werr = ARCA_E_CORRUPT; /* longer than the event says */
        return 0;
    }
    int rc = blob_writer_write(s->w, ptr, n);
    if (rc != 0) {
        s->werr = rc;
        return 0;
    }
    blob_writer_md5(s->w, ptr, n);
    s->got += n;
    return n;
}

/*
 * Makes the blob sha256 (size bytes) whole in the local store, fetched from
 * p.  *blocks gets its block sums when it was fetched (count 0 and *fetched
 * false when the index already knew it: another puller got it first).
 * 0, or an error already recorded in p's status.
 */
static int fetch_blob(struct peer *p, CURL *curl, const uint8_t sha256[32], uint64_t size,
                      struct blob_blocks *blocks, bool *fetched, bool repair)
{
    struct repl *r = p->r;
    char hex[65], url[700], range[64];
    struct blob_digests dig;
    int rc = 0;
    *fetched = false;
    hex_encode(sha256, 32, hex);
    fetch_claim(r, sha256);
    if (!repair && repo_get_blob(r->db, sha256, &dig, NULL) == 0) {
        blob_partial_remove(r->bs, sha256); /* another puller brought it in meanwhile */
        goto out;
    }
    /*
     * Already whole on disk but not yet in the index (fetched by another
     * puller whose event has not applied yet, or by an earlier round that
     * stopped before its event): hashed here instead of fetched again.
     */
    if (!repair && blob_rehash(r->bs, sha256, &dig, blocks) == 0) {
        if (memcmp(dig.sha256, sha256, 32) == 0 && dig.size == size) {
            blob_partial_remove(r->bs, sha256);
            *fetched = true;
            goto out;
        }
        blob_blocks_cleanup(blocks);
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        struct resp_hdrs rh = {0};
        struct blob_sink s = {.p = p, .curl = curl, .rh = &rh, .size = size};
        if ((rc = blob_writer_resume(r->bs, sha256, &s.w, &s.have)) != 0) {
            peer_error(p, "blob %s: cannot open its partial file: %s", hex, arca_strerror(rc));
            goto out;
        }
        if (s.have > size) {
            blob_writer_discard(s.w); /* not this blob's prefix: start over */
            blob_writer_free(s.w);
            continue;
        }
        if (s.have > 0) {
            LOG_I("replication: peer %s: resuming blob %s at byte %llu of %llu", p->cfg.name,
                  hex, (unsigned long long)s.have, (unsigned long long)size);
            pthread_mutex_lock(&p->mu);
            p->st.bytes_resumed += s.have;
            pthread_mutex_unlock(&p->mu);
        }
        CURLcode cc = CURLE_OK;
        long status = s.have == size ? 206 : 0;
        if (s.have < size) {
            struct curl_slist *h = base_headers(p);
            if (s.have > 0) {
                snprintf(range, sizeof(range), "Range: bytes=%llu-", (unsigned long long)s.have);
                h = curl_slist_append(h, range);
            }
            snprintf(url, sizeof(url), "%s/api/v1/replication/blobs/%s", p->cfg.url, hex);
            request_setup(p, curl, url, h, &rh);
            curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, blob_write);
            curl_easy_setopt(curl, CURLOPT_WRITEDATA, &s);
            cc = curl_easy_perform(curl);
            curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
            curl_slist_free_all(h);
        }
        if (s.range_ignored) {
            blob_writer_discard(s.w);
            blob_writer_free(s.w);
            continue;
        }
        if (cc != CURLE_OK || (status != 200 && status != 206) || s.werr) {
            if (s.werr == ARCA_E_CORRUPT) {
                blob_writer_discard(s.w);
                peer_error(p, "blob %s: the peer sent more than the %llu bytes its event names",
                           hex, (unsigned long long)size);
            } else if (s.werr) {
                peer_error(p, "blob %s: local write failed: %s", hex, arca_strerror(s.werr));
            } else {
                set_connected(p, cc == CURLE_OK);
                http_error(p, "fetching a blob", status, &s.err, cc);
            }
            free(s.err.data);
            blob_writer_free(s.w); /* the partial file stays for the next attempt */
            rc = -EIO;
            goto out;
        }
        free(s.err.data);
        rc = blob_writer_finish(s.w, &dig);
        if (rc == 0 && (memcmp(dig.sha256, sha256, 32) != 0 || dig.size != size)) {
            char got[65];
            hex_encode(dig.sha256, 32, got);
            blob_writer_discard(s.w);
            blob_writer_free(s.w);
            peer_error(p, "blob %s failed verification on arrival (got %llu bytes, SHA-256 %s); "
                          "discarded, fetching again", hex, (unsigned long long)dig.size, got);
            rc = ARCA_E_CORRUPT;
            goto out;
        }
        if (rc == 0)
            rc = blob_writer_commit(s.w);
        if (rc == 0)
            blob_writer_take_blocks(s.w, blocks);
        blob_writer_free(s.w);
        if (rc != 0) {
            peer_error(p, "blob %s: storing it failed: %s", hex, arca_strerror(rc));
            goto out;
        }
        *fetched = true;
        pthread_mutex_lock(&p->mu);
        p->st.blobs_fetched++;
        p->st.bytes_fetched += s.got;
        pthread_mutex_unlock(&p->mu);
        goto out;
    }
    peer_error(p, "blob %s: the peer did not honour the resume range twice", hex);
    rc = -EIO;
out:
    fetch_release(r, sha256);
    return rc;
}

/* ---- events ------------------------------------------------------------------------------- */

/* The fields of one event line a puller needs before applying it. */
struct line_info {
    uint64_t seq, origin_seq, hlc, size;
    char origin[64];
    bool put;
    uint8_t sha256[32];
    uint8_t prev[32], hash[32]; /* the peer log's chain: this record's and the one before */
};

static bool line_parse(const char *line, size_t len, struct line_info *li)
{
    json_t *e = json_loadb(line, len, 0, NULL);
    json_t *d = json_object_get(e, "details");
    bool ok = false;
    memset(li, 0, sizeof(*li));
    json_t *seq = json_object_get(e, "seq"), *os = json_object_get(e, "origin_seq");
    json_t *hlc = json_object_get(e, "hlc");
    const char *origin = json_string_value(json_object_get(e, "origin"));
    const char *action = json_string_value(json_object_get(e, "action"));
    if (!json_is_integer(seq) || json_integer_value(seq) <= 0 || !json_is_integer(os) ||
        json_integer_value(os) <= 0 || !json_is_integer(hlc) || !origin || !action ||
        strlen(origin) >= sizeof(li->origin))
        goto out;
    const char *prev = json_string_value(json_object_get(e, "prev"));
    const char *hash = json_string_value(json_object_get(e, "hash"));
    if (!prev || !hash || strlen(prev) != 64 || strlen(hash) != 64 ||
        hex_decode(prev, 64, li->prev, 32) != 0 || hex_decode(hash, 64, li->hash, 32) != 0)
        goto out;
    li->seq = (uint64_t)json_integer_value(seq);
    li->origin_seq = (uint64_t)json_integer_value(os);
    li->hlc = (uint64_t)json_integer_value(hlc);
    snprintf(li->origin, sizeof(li->origin), "%s", origin);
    if (strcmp(action, "artifact.put") == 0) {
        const char *sha = json_string_value(json_object_get(d, "sha256"));
        json_t *size = json_object_get(d, "size");
        if (!sha || strlen(sha) != 64 || hex_decode(sha, 64, li->sha256, 32) != 0 ||
            !json_is_integer(size) || json_integer_value(size) < 0)
            goto out;
        li->size = (uint64_t)json_integer_value(size);
        li->put = true;
    }
    ok = true;
out:
    json_decref(e);
    return ok;
}

/* True when the event is already here (or is this centre's own, come back). */
static bool already_here(struct repl *r, const struct line_info *li)
{
    uint64_t last = 0;
    if (strcmp(li->origin, r->centre) == 0)
        return true;
    return repo_origin_applied(r->db, li->origin, &last) == 0 && li->origin_seq <= last;
}

/*
 * One of this centre's own events came back from a peer.  If it is beyond
 * what this centre has written, this data dir is not the one that wrote it
 * (restored from an old backup, or replaced under the same centre id): the
 * new local events reuse numbers the peers already hold and would be skipped
 * there.  Said loudly, once per run; the fix is a new centre id for this data
 * dir (docs/ARCHITECTURE.md, "Replication").
 */
static void own_event_check(struct peer *p, const struct line_info *li)
{
    uint64_t last = 0;
    if (p->own_ahead_reported || repo_origin_applied(p->r->db, li->origin, &last) != 0 ||
        li->origin_seq <= last)
        return;
    p->own_ahead_reported = true;
    LOG_E("replication: peer %s holds event %s/%llu of THIS centre, but this data dir has "
          "written only %llu: it is not the data dir that wrote them; give it a new "
          "[centre] id, or this centre's new events collide with the old ones",
          p->cfg.name, li->origin, (unsigned long long)li->origin_seq, (unsigned long long)last);
    peer_error(p, "the peer holds this centre's own event %s/%llu, beyond the %llu written "
                  "here: this data dir replaced the one that wrote them (use a new centre id)",
               li->origin, (unsigned long long)li->origin_seq, (unsigned long long)last);
}

/* One event line of a page, parsed once. */
struct page_line {
    const char *text;
    size_t len;
    struct line_info li;
    bool pending;      /* not here yet */
    bool blob_missing; /* an upload whose blob the index does not know (when read) */
};

/*
 * Splits a page into its event lines and parses each, up to the first that
 * does not parse (*bad then).  The caller frees the array.  NULL with *n 0
 * for an empty page (or no memory: the page is then read again next round).
 */
static struct page_line *page_split(struct repl *r, const char *data, size_t len, size_t *n,
                                    bool *bad)
{
    size_t cap = 0;
    struct page_line *lines = NULL;
    const char *s = data, *end = data + len;
    *n = 0;
    *bad = false;
    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        size_t ll = nl ? (size_t)(nl - s) : (size_t)(end - s);
        if (ll > 0) {
            if (*n == cap) {
                size_t ncap = cap ? cap * 2 : 64;
                struct page_line *nlines = realloc(lines, ncap * sizeof(*nlines));
                if (!nlines)
                    break;
                lines = nlines;
                cap = ncap;
            }
            struct page_line *pl = &lines[*n];
            struct blob_digests dig;
            pl->text = s;
            pl->len = ll;
            if (!line_parse(s, ll, &pl->li)) {
                *bad = true;
                break;
            }
            pl->pending = !already_here(r, &pl->li);
            pl->blob_missing = pl->pending && pl->li.put &&
                               repo_get_blob(r->db, pl->li.sha256, &dig, NULL) == ARCA_E_NOTFOUND;
            (*n)++;
        }
        s += ll + 1;
    }
    return lines;
}

/*
 * The status before a page is applied: the blobs still to take in (the peer's
 * uploads after the cursor, from its answer; this page's missing blobs from a
 * peer that does not say) and the lag (the oldest event not yet here).
 */
static void count_behind(struct peer *p, const struct page_line *lines, size_t n,
                         const struct resp_hdrs *rh)
{
    uint64_t blobs = 0, bytes = 0, oldest = 0;
    for (size_t i = 0; i < n; i++) {
        if (lines[i].pending && !oldest)
            oldest = lines[i].li.hlc;
        if (lines[i].blob_missing) {
            blobs++;
            bytes += lines[i].li.size;
        }
    }
    pthread_mutex_lock(&p->mu);
    p->st.blobs_behind = rh->have_backlog && rh->puts_after > blobs ? rh->puts_after : blobs;
    p->st.bytes_behind = rh->have_backlog && rh->put_bytes_after > bytes ? rh->put_bytes_after
                                                                          : bytes;
    if (oldest) {
        uint64_t now = now_ms(), t = HLC_MS(oldest);
        p->st.lag_seconds = now > t ? (double)(now - t) / 1000.0 : 0.0;
    }
    pthread_mutex_unlock(&p->mu);
}

/*
 * The blobs a page needs, fetched before its events are applied, by up to
 * replication.parallel_fetches threads at once: small blobs' round trips and
 * fsyncs overlap, and large ones hash on several cores.  Events still apply
 * one by one, in order.
 */
struct fetch_job {
    uint8_t sha256[32];
    uint64_t size;
    struct blob_blocks blocks;
    bool fetched;
    int rc;
};

struct prefetch {
    struct peer *p;
    struct fetch_job *jobs;
    size_t n;
    atomic_size_t next;
    atomic_bool failed; /* one fetch failed: the page stops at its event, so do the others */
};

struct prefetcher {
    struct prefetch *pf;
    CURL *curl;
    pthread_t thread;
};

static void *prefetch_worker(void *arg)
{
    struct prefetcher *w = arg;
    struct prefetch *pf = w->pf;
    for (;;) {
        size_t i = atomic_fetch_add(&pf->next, 1);
        if (i >= pf->n || atomic_load(&pf->p->r->stop) || atomic_load(&pf->failed))
            break;
        struct fetch_job *j = &pf->jobs[i];
        j->rc = fetch_blob(pf->p, w->curl, j->sha256, j->size, &j->blocks, &j->fetched, false);
        if (j->rc != 0)
            atomic_store(&pf->failed, true);
    }
    return NULL;
}

static int job_cmp(const void *a, const void *b)
{
    return memcmp(((const struct fetch_job *)a)->sha256, ((const struct fetch_job *)b)->sha256, 32);
}

/* Collects the page's missing blobs (each once) and fetches them.  Jobs sorted by SHA-256. */
static void prefetch_page(struct peer *p, const struct page_line *lines, size_t n,
                          struct prefetch *pf)
{
    struct repl *r = p->r;
    memset(pf, 0, sizeof(*pf));
    pf->p = p;
    if (n && !(pf->jobs = calloc(n, sizeof(*pf->jobs))))
        return; /* fetched one by one while applying instead */
    for (size_t i = 0; i < n; i++) {
        const struct line_info *li = &lines[i].li;
        bool dup = false;
        for (size_t k = 0; k < pf->n && !dup; k++)
            dup = memcmp(pf->jobs[k].sha256, li->sha256, 32) == 0;
        if (lines[i].blob_missing && !dup) {
            memcpy(pf->jobs[pf->n].sha256, li->sha256, 32);
            pf->jobs[pf->n++].size = li->size;
        }
    }
    size_t nw = pf->n < r->parallel ? pf->n : r->parallel;
    if (nw > PREFETCH_MAX)
        nw = PREFETCH_MAX;
    if (nw > 1) {
        struct prefetcher w[PREFETCH_MAX];
        size_t started = 0;
        for (size_t k = 0; k < nw; k++) {
            if (!p->xfer[k] && !(p->xfer[k] = curl_easy_init()))
                break;
            w[k] = (struct prefetcher){.pf = pf, .curl = p->xfer[k]};
            if (pthread_create(&w[k].thread, NULL, prefetch_worker, &w[k]) != 0)
                break;
            started++;
        }
        for (size_t k = 0; k < started; k++)
            pthread_join(w[k].thread, NULL);
    }
    /* With one fetcher (or none started) the apply loop fetches as it goes. */
    if (pf->n)
        qsort(pf->jobs, pf->n, sizeof(*pf->jobs), job_cmp);
}

static void prefetch_free(struct prefetch *pf)
{
    for (size_t i = 0; i < pf->n; i++)
        blob_blocks_cleanup(&pf->jobs[i].blocks);
    free(pf->jobs);
}

/*
 * Applies one page.  *cursor advances past every event taken in.  0 (all of
 * it), or an error already recorded (the rest waits for the next round).
 */
struct cursor {
    uint64_t seq;
    uint8_t hash[32]; /* of the event at seq in the peer's log; all zero: not known */
};

static bool hash_known(const uint8_t h[32])
{
    static const uint8_t zero[32];
    return memcmp(h, zero, 32) != 0;
}

/* apply_page: the page does not continue the log the cursor points into. */
#define LOG_CHANGED 1

/*
 * Applies one pending event (its blob from the page's fetches, or fetched
 * now).  0, or an error already recorded.
 */
static int apply_one(struct peer *p, const struct page_line *pl, struct prefetch *pf)
{
    struct repl *r = p->r;
    const struct line_info *li = &pl->li;
    struct blob_blocks own = {0}, *blocks = NULL;
    struct blob_digests dig;
    bool fetched = false, applied = false;
    int rc = 0;
    if (li->put && repo_get_blob(r->db, li->sha256, &dig, NULL) == ARCA_E_NOTFOUND) {
        struct fetch_job key, *j = NULL;
        memcpy(key.sha256, li->sha256, 32);
        if (pf->n)
            j = bsearch(&key, pf->jobs, pf->n, sizeof(*pf->jobs), job_cmp);
        if (j && (j->fetched || j->rc)) {
            rc = j->rc;
            fetched = j->fetched;
            blocks = &j->blocks;
        } else {
            rc = fetch_blob(p, p->curl, li->sha256, li->size, &own, &fetched, false);
            blocks = &own;
        }
    }
    if (rc == 0)
        rc = repo_apply_remote(r->db, pl->text, pl->len, fetched ? blocks : NULL, &applied);
    blob_blocks_cleanup(&own);
    if (rc == ARCA_E_NOTFOUND && !fetched) {
        /* The index lost sight of the blob between the check and the apply: next round. */
        peer_error(p, "event %s/%llu: its blob is not here yet", li->origin,
                   (unsigned long long)li->origin_seq);
    } else if (rc != 0 && rc != -EIO && rc != ARCA_E_CORRUPT) {
        peer_error(p, "applying event %s/%llu failed: %s", li->origin,
                   (unsigned long long)li->origin_seq, arca_strerror(rc));
    }
    if (rc != 0)
        return rc;
    pthread_mutex_lock(&p->mu);
    if (applied)
        p->st.events_applied++;
    snprintf(p->st.last_origin, sizeof(p->st.last_origin), "%s", li->origin);
    p->st.last_origin_seq = li->origin_seq;
    p->st.last_hlc = li->hlc;
    pthread_mutex_unlock(&p->mu);
    return 0;
}

static int apply_page(struct peer *p, const char *data, size_t len, struct cursor *cursor,
                      const struct resp_hdrs *rh)
{
    struct repl *r = p->r;
    struct prefetch pf;
    size_t n;
    bool bad;
    int rc = 0;
    struct page_line *lines = page_split(r, data, len, &n, &bad);
    /* bad: a line that does not parse; it, or a seq not after the cursor, stops the page. */
    count_behind(p, lines, n, rh);
    prefetch_page(p, lines, n, &pf);
    for (size_t i = 0; i < n && !atomic_load(&r->stop); i++) {
        const struct line_info *li = &lines[i].li;
        if (li->seq <= cursor->seq) {
            bad = true;
            break;
        }
        if (cursor->seq > 0 && hash_known(cursor->hash) &&
            (li->seq != cursor->seq + 1 || memcmp(li->prev, cursor->hash, 32) != 0)) {
            rc = LOG_CHANGED; /* another log (a restored or re-pointed peer) */
            break;
        }
        pthread_mutex_lock(&p->mu);
        p->st.events_seen++;
        pthread_mutex_unlock(&p->mu);
        if (strcmp(li->origin, r->centre) == 0)
            own_event_check(p, li);
        if (!already_here(r, li) && (rc = apply_one(p, &lines[i], &pf)) != 0)
            break;
        cursor->seq = li->seq;
        memcpy(cursor->hash, li->hash, 32);
        pthread_mutex_lock(&p->mu);
        p->st.cursor = li->seq;
        if (li->put) { /* one upload fewer to take in, fetched or not */
            p->st.blobs_behind -= p->st.blobs_behind ? 1 : 0;
            p->st.bytes_behind -= p->st.bytes_behind >= li->size ? li->size : p->st.bytes_behind;
        }
        pthread_mutex_unlock(&p->mu);
    }
    if (rc == 0 && bad && !atomic_load(&r->stop)) {
        peer_error(p, "malformed or out-of-order event after seq %llu in the peer's log",
                   (unsigned long long)cursor->seq);
        rc = ARCA_E_INVALID;
    }
    prefetch_free(&pf);
    free(lines);
    return rc;
}

/*
 * One round: fetch a page after the cursor and apply it.  *more: the peer
 * has further events right away.  0 or an error (recorded).
 */
static int pull_once(struct peer *p, struct cursor *cursor, bool *more)
{
    struct repl *r = p->r;
    char url[700];
    struct membuf body = {.max = PAGE_MAX};
    struct resp_hdrs rh = {0};
    long status = 0;
    int rc = 0;
    *more = false;
    snprintf(url, sizeof(url), "%s/api/v1/replication/events?after=%llu&limit=%llu", p->cfg.url,
             (unsigned long long)cursor->seq, (unsigned long long)r->batch);
    CURLcode cc = get_into(p, url, &body, &rh, &status);
    if (cc != CURLE_OK || status != 200 || body.overflow) {
        set_connected(p, cc == CURLE_OK);
        if (body.overflow)
            peer_error(p, "a page of events was larger than %u bytes", PAGE_MAX);
        else
            http_error(p, "fetching events", status, &body, cc);
        rc = -EIO;
        goto out;
    }
    set_connected(p, true);
    if (rh.have_log_size && rh.log_size < cursor->seq) {
        /* The peer's log is shorter than where we were: it was rebuilt.  Read it again. */
        LOG_W("replication: peer %s: its log has %llu events but the cursor is at %llu; "
              "starting over from 0 (events already here are skipped)",
              p->cfg.name, (unsigned long long)rh.log_size, (unsigned long long)cursor->seq);
        goto restart;
    }
    pthread_mutex_lock(&p->mu);
    if (rh.have_log_size)
        p->st.head = rh.log_size;
    pthread_mutex_unlock(&p->mu);
    uint64_t before = cursor->seq;
    rc = apply_page(p, body.data ? body.data : "", body.len, cursor, &rh);
    if (rc == LOG_CHANGED) {
        LOG_W("replication: peer %s: the event after seq %llu does not continue the log the "
              "cursor was in (restored from a backup, or the url now names another centre); "
              "starting over from 0 (events already here are skipped)",
              p->cfg.name, (unsigned long long)cursor->seq);
        goto restart;
    }
    if (cursor->seq != before) {
        int wrc = repo_peer_cursor_set(r->db, p->cfg.name, cursor->seq, cursor->hash);
        if (wrc != 0)
            peer_error(p, "cannot persist the cursor: %s", arca_strerror(wrc));
    } else if (rc == 0 && rh.more) {
        /* "More" and nothing in the page: never spin on a peer that says so. */
        peer_error(p, "the peer announced more events after seq %llu but sent none",
                   (unsigned long long)cursor->seq);
        rc = -EIO;
    }
    *more = rc == 0 && rh.more;
    pthread_mutex_lock(&p->mu);
    if (rc == 0 && p->st.cursor >= p->st.head) {
        p->st.lag_seconds = 0;
        p->st.blobs_behind = p->st.bytes_behind = 0;
    }
    pthread_mutex_unlock(&p->mu);
out:
    free(body.data);
    return rc;
restart:
    memset(cursor, 0, sizeof(*cursor));
    if ((rc = repo_peer_cursor_set(r->db, p->cfg.name, 0, cursor->hash)) != 0)
        peer_error(p, "cannot persist the cursor: %s", arca_strerror(rc));
    pthread_mutex_lock(&p->mu);
    p->st.cursor = 0;
    pthread_mutex_unlock(&p->mu);
    *more = rc == 0;
    free(body.data);
    return rc;
}

/* ---- repair -------------------------------------------------------------------------------- */

struct bad_blobs {
    struct repl *r;
    struct peer *p;
    bool deep;
    struct {
        uint8_t sha256[32];
        uint64_t size;
    } *items;
    size_t n, cap;
    int err;
};

/* One blob of the index: collected when missing, the wrong size, or (deep) damaged. */
static int check_blob(void *arg, const struct blob_digests *dig, const struct blob_blocks *blocks)
{
    struct bad_blobs *bb = arg;
    int rc;
    if (atomic_load(&bb->r->stop))
        return 1;
    if (bb->deep) {
        rc = blob_verify(bb->r->bs, dig, blocks);
    } else {
        int fd = -1;
        uint64_t size = 0;
        rc = blob_open(bb->r->bs, dig->sha256, &fd, &size);
        if (fd >= 0)
            close(fd);
        if (rc == 0 && size != dig->size)
            rc = ARCA_E_CORRUPT;
    }
    pthread_mutex_lock(&bb->p->mu);
    bb->p->st.repair.blobs_checked++;
    pthread_mutex_unlock(&bb->p->mu);
    if (rc == 0)
        return 0;
    if (rc != -ENOENT && rc != ARCA_E_CORRUPT) {
        bb->err = rc;
        return 1;
    }
    if (bb->n == bb->cap) {
        size_t cap = bb->cap ? bb->cap * 2 : 64;
        void *n = realloc(bb->items, cap * sizeof(*bb->items));
        if (!n) {
            bb->err = -ENOMEM;
            return 1;
        }
        bb->items = n;
        bb->cap = cap;
    }
    memcpy(bb->items[bb->n].sha256, dig->sha256, 32);
    bb->items[bb->n++].size = dig->size;
    return 0;
}

static void repair(struct peer *p, bool deep)
{
    struct repl *r = p->r;
    struct bad_blobs bb = {.r = r, .p = p, .deep = deep};
    uint64_t refetched = 0, failed = 0;
    LOG_I("replication: repairing from peer %s (%s blob check); its log is read again from 0",
          p->cfg.name, deep ? "deep" : "size");
    int rc = repo_walk_blobs(r->db, check_blob, &bb);
    if (rc == 0 && bb.err)
        rc = bb.err;
    if (rc != 0 && rc != 1)
        peer_error(p, "repair: checking the blobs failed: %s", arca_strerror(rc));
    pthread_mutex_lock(&p->mu);
    p->st.repair.blobs_bad = bb.n;
    pthread_mutex_unlock(&p->mu);
    for (size_t i = 0; i < bb.n && !atomic_load(&r->stop); i++) {
        char hex[65];
        struct blob_blocks blocks = {0};
        bool fetched = false;
        hex_encode(bb.items[i].sha256, 32, hex);
        /* The damaged copy stays readable (as damaged) until the fetched one replaces it. */
        LOG_W("replication: repair: blob %s is missing or damaged here; fetching it from %s", hex,
              p->cfg.name);
        rc = fetch_blob(p, p->curl, bb.items[i].sha256, bb.items[i].size, &blocks, &fetched, true);
        blob_blocks_cleanup(&blocks);
        if (rc == 0 && fetched)
            refetched++;
        else
            failed++;
        pthread_mutex_lock(&p->mu);
        p->st.repair.blobs_refetched = refetched;
        p->st.repair.blobs_failed = failed;
        pthread_mutex_unlock(&p->mu);
    }
    free(bb.items);
    LOG_I("replication: repair from %s: %llu blob(s) bad, %llu fetched again, %llu failed",
          p->cfg.name, (unsigned long long)bb.n, (unsigned long long)refetched,
          (unsigned long long)failed);
}

int repl_repair_start(repl *r, const char *peer, bool deep)
{
    for (size_t i = 0; r && i < r->npeers; i++) {
        struct peer *p = &r->peers[i];
        if (strcmp(p->cfg.name, peer) != 0)
            continue;
        int rc = 0;
        pthread_mutex_lock(&p->mu);
        if (p->st.repair.requested || p->st.repair.running) {
            rc = ARCA_E_EXISTS;
        } else {
            memset(&p->st.repair, 0, sizeof(p->st.repair));
            p->st.repair.requested = true;
            p->st.repair.deep = deep;
        }
        pthread_mutex_unlock(&p->mu);
        if (rc == 0) {
            pthread_mutex_lock(&r->wait_mu);
            pthread_cond_broadcast(&r->wait_cv); /* wakes every napping puller; they re-check */
            pthread_mutex_unlock(&r->wait_mu);
        }
        return rc;
    }
    return ARCA_E_NOTFOUND;
}

/* Runs an asked-for repair on the puller's thread. */
static void maybe_repair(struct peer *p, struct cursor *cursor)
{
    pthread_mutex_lock(&p->mu);
    bool go = p->st.repair.requested;
    bool deep = p->st.repair.deep;
    if (go) {
        p->st.repair.requested = false;
        p->st.repair.running = true;
        p->st.repair.started_ms = now_ms();
    }
    pthread_mutex_unlock(&p->mu);
    if (!go)
        return;
    repair(p, deep);
    memset(cursor, 0, sizeof(*cursor));
    int rc = repo_peer_cursor_set(p->r->db, p->cfg.name, 0, cursor->hash);
    if (rc != 0)
        peer_error(p, "repair: cannot reset the cursor: %s", arca_strerror(rc));
    pthread_mutex_lock(&p->mu);
    p->st.cursor = 0;
    p->st.repair.running = false;
    p->st.repair.finished_ms = now_ms();
    pthread_mutex_unlock(&p->mu);
}

/*
 * Takes in the peer's origin checkpoints (its own, freshly signed, and the
 * ones it accepted from others): each is checked against this centre's copy
 * of that origin's log, so a centre whose history was rewritten anywhere on
 * the way shows up here.  Once a second at most, when caught up.
 */
#define CHECKPOINT_EVERY_MS 1000

static void exchange_checkpoints(struct peer *p)
{
    struct repl *r = p->r;
    char url[700];
    struct membuf body = {.max = 1u << 20};
    struct resp_hdrs rh = {0};
    long status = 0;
    uint64_t now = now_ms();
    if (now - p->checkpoints_at_ms < CHECKPOINT_EVERY_MS)
        return;
    p->checkpoints_at_ms = now;
    snprintf(url, sizeof(url), "%s/api/v1/audit/origins/checkpoints", p->cfg.url);
    CURLcode cc = get_into(p, url, &body, &rh, &status);
    if (cc != CURLE_OK || status != 200) {
        http_error(p, "fetching origin checkpoints", status, &body, cc);
        free(body.data);
        return;
    }
    json_t *arr = json_loadb(body.data ? body.data : "", body.len, 0, NULL);
    free(body.data);
    if (!json_is_array(arr)) {
        peer_error(p, "origin checkpoints: the answer is not a JSON array");
        json_decref(arr);
        return;
    }
    size_t i;
    json_t *cp;
    uint64_t accepted = 0;
    json_array_foreach(arr, i, cp)
    {
        char why[256] = "";
        int rc = audit_origin_checkpoint_accept(r->db, cp, why, sizeof(why));
        const char *origin = json_string_value(json_object_get(cp, "origin"));
        if (rc == 0) {
            accepted++;
        } else if (rc == ARCA_E_CONFLICT) {
            pthread_mutex_lock(&p->mu);
            p->st.checkpoint_conflicts++;
            pthread_mutex_unlock(&p->mu);
            LOG_E("replication: peer %s: origin %s's signed history disagrees with ours: %s",
                  p->cfg.name, origin ? origin : "?", why);
            peer_error(p, "origin checkpoint of %s refused: %s", origin ? origin : "?", why);
        } else {
            peer_error(p, "origin checkpoint of %s refused: %s", origin ? origin : "?",
                       why[0] ? why : arca_strerror(rc));
        }
    }
    json_decref(arr);
    pthread_mutex_lock(&p->mu);
    p->st.checkpoints_accepted += accepted;
    pthread_mutex_unlock(&p->mu);
}

static void *puller(void *arg)
{
    struct peer *p = arg;
    struct repl *r = p->r;
    struct cursor cursor = {0};
    if (repo_peer_cursor_get(r->db, p->cfg.name, &cursor.seq, cursor.hash) != 0)
        memset(&cursor, 0, sizeof(cursor));
    pthread_mutex_lock(&p->mu);
    p->st.cursor = cursor.seq;
    pthread_mutex_unlock(&p->mu);
    LOG_I("replication: pulling from peer %s (%s) after seq %llu", p->cfg.name, p->cfg.url,
          (unsigned long long)cursor.seq);
    while (!atomic_load(&r->stop)) {
        bool more = false;
        maybe_repair(p, &cursor);
        int rc = pull_once(p, &cursor, &more);
        if (rc != 0) {
            p->failures++;
            uint64_t ms = 500u << (p->failures < 10 ? p->failures - 1 : 9);
            if (ms > r->retry_max_s * 1000)
                ms = r->retry_max_s * 1000;
            nap(r, ms);
            continue;
        }
        if (p->failures) {
            LOG_I("replication: peer %s: back in contact", p->cfg.name);
            p->failures = 0;
        }
        if (!more) {
            exchange_checkpoints(p);
            nap(r, r->poll_ms);
        }
    }
    return NULL;
}

/* ---- life cycle --------------------------------------------------------------------------- */

static int read_token_file(const char *path, char *out, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -errno;
    size_t n = fread(out, 1, cap - 1, f);
    bool longer = fgetc(f) != EOF;
    fclose(f);
    if (longer)
        return -EFBIG; /* never a silently truncated credential */
    out[n] = '\0';
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r' || out[n - 1] == ' '))
        out[--n] = '\0';
    return n > 0 ? 0 : -ENODATA;
}

/* A partial transfer of a blob the index already names is left over: removed at start. */
static void drop_stale_partial(void *arg, const uint8_t sha256[32])
{
    struct repl *r = arg;
    struct blob_digests dig;
    if (repo_get_blob(r->db, sha256, &dig, NULL) == 0)
        blob_partial_remove(r->bs, sha256);
}

int repl_start(const struct arca_config *cfg, repo_db *db, blob_store *bs, repl **out)
{
    int rc = 0;
    struct repl *r = calloc(1, sizeof(*r));
    *out = NULL;
    if (!r)
        return -ENOMEM;
    r->db = db;
    r->bs = bs;
    snprintf(r->centre, sizeof(r->centre), "%s", cfg->centre_id);
    r->poll_ms = cfg->repl_poll_ms;
    r->batch = cfg->repl_batch;
    r->retry_max_s = cfg->repl_retry_max;
    r->connect_timeout_s = cfg->repl_connect_timeout;
    r->parallel = cfg->repl_parallel_fetches;
    pthread_mutex_init(&r->wait_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* a wall-clock step never stalls a nap */
    pthread_cond_init(&r->wait_cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&r->fetch_mu, NULL);
    pthread_cond_init(&r->fetch_cv, NULL);
    blob_partial_each(bs, drop_stale_partial, r);
    if (cfg->npeers == 0)
        goto done;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        LOG_E("replication: libcurl initialisation failed");
        rc = ARCA_E_CONFIG;
        goto fail;
    }
    r->curl_init = true;
    r->peers = calloc(cfg->npeers, sizeof(*r->peers));
    r->fetching = calloc(cfg->npeers * PREFETCH_MAX, sizeof(*r->fetching));
    if (!r->peers || !r->fetching) {
        rc = -ENOMEM;
        goto fail;
    }
    for (size_t i = 0; i < cfg->npeers; i++)
        pthread_mutex_init(&r->peers[i].mu, NULL);
    r->npeers = cfg->npeers;
    for (size_t i = 0; i < r->npeers; i++) {
        struct peer *p = &r->peers[i];
        char token[160] = "";
        p->r = r;
        p->cfg = cfg->peers[i];
        snprintf(p->st.name, sizeof(p->st.name), "%s", p->cfg.name);
        snprintf(p->st.url, sizeof(p->st.url), "%s", p->cfg.url);
        if (p->cfg.token_file[0]) {
            if ((rc = read_token_file(p->cfg.token_file, token, sizeof(token))) != 0) {
                LOG_E("replication: peer %s: cannot read token_file %s: %s", p->cfg.name,
                      p->cfg.token_file, rc == -ENODATA ? "it is empty" : rc == -EFBIG ? "longer than a token" : strerror(-rc));
                rc = ARCA_E_CONFIG;
                goto fail;
            }
        } else {
            snprintf(token, sizeof(token), "%s", p->cfg.token);
        }
        if (token[0])
            snprintf(p->auth_header, sizeof(p->auth_header), "Authorization: Bearer %s", token);
        if (!(p->curl = curl_easy_init())) {
            rc = -ENOMEM;
            goto fail;
        }
    }
    for (size_t i = 0; i < r->npeers; i++) {
        r->peers[i].started_ms = now_ms();
        if ((rc = pthread_create(&r->peers[i].thread, NULL, puller, &r->peers[i])) != 0) {
            rc = -rc;
            goto fail;
        }
        r->peers[i].started = true;
    }
done:
    *out = r;
    return 0;
fail:
    repl_stop(r);
    return rc;
}

void repl_halt(repl *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->wait_mu);
    atomic_store(&r->stop, true);
    pthread_cond_broadcast(&r->wait_cv);
    pthread_mutex_unlock(&r->wait_mu);
    for (size_t i = 0; i < r->npeers; i++) {
        struct peer *p = &r->peers[i];
        if (p->started)
            pthread_join(p->thread, NULL);
        p->started = false;
        pthread_mutex_lock(&p->mu);
        p->st.connected = false;
        pthread_mutex_unlock(&p->mu);
    }
}

void repl_stop(repl *r)
{
    if (!r)
        return;
    repl_halt(r);
    for (size_t i = 0; i < r->npeers; i++) {
        struct peer *p = &r->peers[i];
        if (p->curl)
            curl_easy_cleanup(p->curl);
        for (size_t k = 0; k < PREFETCH_MAX; k++)
            if (p->xfer[k])
                curl_easy_cleanup(p->xfer[k]);
        pthread_mutex_destroy(&p->mu);
    }
    if (r->curl_init)
        curl_global_cleanup();
    pthread_mutex_destroy(&r->wait_mu);
    pthread_cond_destroy(&r->wait_cv);
    pthread_mutex_destroy(&r->fetch_mu);
    pthread_cond_destroy(&r->fetch_cv);
    free(r->fetching);
    free(r->peers);
    free(r);
}

size_t repl_status(repl *r, struct repl_peer_status *out, size_t max)
{
    if (!r)
        return 0;
    for (size_t i = 0; i < r->npeers && i < max; i++) {
        struct peer *p = &r->peers[i];
        pthread_mutex_lock(&p->mu);
        out[i] = p->st;
        pthread_mutex_unlock(&p->mu);
        /* Cut off, the lag is at least the time since the peer last answered (or ever could). */
        uint64_t now = now_ms();
        uint64_t since = out[i].last_contact_ms ? out[i].last_contact_ms : p->started_ms;
        if (!out[i].connected && since && now > since) {
            double away = (double)(now - since) / 1000.0;
            if (away > out[i].lag_seconds)
                out[i].lag_seconds = away;
        }
    }
    return r->npeers;
}
