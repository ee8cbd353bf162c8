/*
 * `arcad replication verify [--peer NAME] [--json] [--config FILE] [--data DIR]`:
 * compares this centre's replicated state with each configured peer's (or
 * the one named) and lists every key where they diverge.
 *
 * It asks the local arcad (server.listen, or the port in DATA/arcad.port when
 * that port is 0; the admin token of DATA/admin.token) and each peer (its
 * [peer.NAME] url and credential) for GET /api/v1/replication/digest.  Equal
 * state digests: in agreement.  Otherwise every part whose count or digest
 * differ is narrowed down, bucket by bucket (storage/replica.h:
 * repo_range_diff), to the keys that differ; the requests grow with the
 * number of divergent keys, not with the size of the index.
 *
 * Output (stdout): one line per divergent key, "PART KEY-HEX: only here",
 * "... only at PEER" or "... differs", then a summary line per peer; with
 * --json, the same as one JSON object per line.  Problems go to stderr.
 * Exit 0 when every peer agrees, 1 when one diverges, 2 when the check could
 * not be made (bad arguments, a centre unreachable or answering an error).
 *
 * Centres that are replicating right now may differ by the events in flight:
 * a divergence that a second run no longer shows was one of those.
 */
#include "arca_err.h"
#include "config.h"
#include "replica.h"
#include "server_int.h"
#include "util.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROG "arcad replication verify"
/* A leaf answer is at most 64 keys of 4096 hex digits; the rest is far smaller. */
#define BODY_MAX (4u << 20)
/* The whole-state digest reads the whole index: give a big one time. */
#define REQUEST_TIMEOUT_S 600L

/* One centre the check talks to: the local arcad or a peer. */
struct centre_conn {
    const char *name;               /* the peer's [peer.NAME], or "local" */
    char url[600];                  /* scheme://host:port */
    char auth[200];                 /* "Authorization: Bearer ..." or "" */
    const struct config_peer *peer; /* TLS settings of a peer; NULL for the local arcad */
    long connect_timeout;
    CURL *curl;
    char centre[65]; /* the centre id it answered with */
    char err[600];   /* why the last request failed */
};

struct membuf {
    char *data;
    size_t len;
    bool over;
};

static size_t mem_write(char *p, size_t size, size_t n, void *arg)
{
    struct membuf *b = arg;
    size_t len = size * n;
    if (b->len + len > BODY_MAX) {
        b->over = true;
        return 0;
    }
    char *nd = realloc(b->data, b->len + len + 1);
    if (!nd)
        return 0;
    memcpy(nd + b->len, p, len);
    b->data = nd;
    b->len += len;
    b->data[b->len] = '\0';
    return len;
}

static void conn_fail(struct centre_conn *cc, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void conn_fail(struct centre_conn *cc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cc->err, sizeof(cc->err), fmt, ap);
    va_end(ap);
}

/*
 * GET url + path_query; *out: the JSON object of a 200 answer (json_decref
 * it).  0, or ARCA_E_INVALID / ARCA_E_NOTFOUND with cc->err saying why.
 */
static int get_json(struct centre_conn *cc, const char *path_query, json_t **out)
{
    struct membuf body = {0};
    struct curl_slist *hdrs = NULL;
    char url[sizeof(cc->url) + 2 * REPO_RANGE_PREFIX_MAX + 128];
    long status = 0;
    int rc = ARCA_E_INVALID;
    *out = NULL;
    snprintf(url, sizeof(url), "%s%s", cc->url, path_query);
    if (cc->auth[0])
        hdrs = curl_slist_append(hdrs, cc->auth);
    hdrs = curl_slist_append(hdrs, "Accept: application/json");
    curl_easy_reset(cc->curl);
    curl_easy_setopt(cc->curl, CURLOPT_URL, url);
    curl_easy_setopt(cc->curl, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(cc->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(cc->curl, CURLOPT_CONNECTTIMEOUT, cc->connect_timeout);
    curl_easy_setopt(cc->curl, CURLOPT_TIMEOUT, REQUEST_TIMEOUT_S);
    curl_easy_setopt(cc->curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(cc->curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(cc->curl, CURLOPT_WRITEFUNCTION, mem_write);
    curl_easy_setopt(cc->curl, CURLOPT_WRITEDATA, &body);
    if (cc->peer && cc->peer->ca_file[0])
        curl_easy_setopt(cc->curl, CURLOPT_CAINFO, cc->peer->ca_file);
    if (cc->peer && cc->peer->cert_file[0]) {
        curl_easy_setopt(cc->curl, CURLOPT_SSLCERT, cc->peer->cert_file);
        curl_easy_setopt(cc->curl, CURLOPT_SSLKEY, cc->peer->key_file);
    }
    CURLcode cr = curl_easy_perform(cc->curl);
    curl_easy_getinfo(cc->curl, CURLINFO_RESPONSE_CODE, &status);
    if (cr != CURLE_OK) {
        conn_fail(cc, "GET %s: %s", url, body.over ? "answer too large" : curl_easy_strerror(cr));
        goto out;
    }
    json_t *j = json_loadb(body.data ? body.data : "", body.len, 0, NULL);
    if (status != 200) {
        const char *msg =
            json_string_value(json_object_get(json_object_get(j, "error"), "message"));
        conn_fail(cc, "GET %s: HTTP %ld%s%.300s", url, status, msg ? ": " : "", msg ? msg : "");
        json_decref(j);
        rc = status == 404 ? ARCA_E_NOTFOUND : ARCA_E_INVALID;
        goto out;
    }
    if (!json_is_object(j)) {
        conn_fail(cc, "GET %s: the answer is not a JSON object", url);
        json_decref(j);
        goto out;
    }
    *out = j;
    rc = 0;
out:
    curl_slist_free_all(hdrs);
    free(body.data);
    return rc;
}

static bool hex64(json_t *v, uint64_t *out)
{
    const char *s = json_string_value(v);
    uint8_t b[8];
    if (!s || strlen(s) != 16 || hex_decode(s, 16, b, 8) != 0)
        return false;
    *out = 0;
    for (int i = 0; i < 8; i++)
        *out = *out << 8 | b[i];
    return true;
}

static bool count_of(json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

/* An answer of ?part=&prefix= into r (see h_repl.c); false when it is not one. */
static bool range_parse(json_t *j, struct repo_range *r)
{
    json_t *keys = json_object_get(j, "keys"), *buckets = json_object_get(j, "buckets");
    if (!count_of(json_object_get(j, "count"), &r->count) ||
        !hex64(json_object_get(j, "digest"), &r->digest))
        return false;
    if (json_is_array(keys)) {
        r->leaf = true;
        if (json_array_size(keys) > REPO_RANGE_LEAF_MAX)
            return false;
        for (size_t i = 0; i < json_array_size(keys); i++) {
            json_t *k = json_array_get(keys, i);
            const char *hex = json_string_value(json_object_get(k, "key"));
            size_t hl = hex ? strlen(hex) : 1;
            struct repo_range_key *rk = &r->keys[r->nkeys];
            if (hl % 2 || hl > 2 * REPO_RANGE_PREFIX_MAX ||
                !hex64(json_object_get(k, "digest"), &rk->digest))
                return false;
            if (!(rk->key = malloc(hl / 2 + 1)))
                return false;
            r->nkeys++;
            rk->len = hl / 2;
            if (hex_decode(hex, hl, (uint8_t *)rk->key, rk->len) != 0)
                return false;
        }
        return true;
    }
    if (!json_is_array(buckets) || json_array_size(buckets) > 256)
        return false;
    for (size_t i = 0; i < json_array_size(buckets); i++) {
        json_t *b = json_array_get(buckets, i);
        const char *hex = json_string_value(json_object_get(b, "byte"));
        struct repo_range_bucket *rb = &r->buckets[r->nbuckets++];
        if (!hex || strlen(hex) != 2 || hex_decode(hex, 2, &rb->byte, 1) != 0 ||
            !count_of(json_object_get(b, "count"), &rb->count) ||
            !hex64(json_object_get(b, "digest"), &rb->digest))
            return false;
    }
    json_t *exact = json_object_get(j, "exact");
    r->has_exact = exact && !json_is_null(exact);
    return !r->has_exact || hex64(exact, &r->exact_digest);
}

/* repo_range_fetch_fn over HTTP. */
static int fetch_range(void *arg, const char *part, const void *prefix, size_t plen,
                       struct repo_range *out)
{
    struct centre_conn *cc = arg;
    char q[128 + 2 * REPO_RANGE_PREFIX_MAX + 1];
    json_t *j = NULL;
    int n = snprintf(q, sizeof(q), "/api/v1/replication/digest?part=%s", part);
    if (plen > 0) {
        n += snprintf(q + n, sizeof(q) - (size_t)n, "&prefix=");
        hex_encode(prefix, plen, q + n);
    }
    int rc = get_json(cc, q, &j);
    if (rc == 0 && !range_parse(j, out)) {
        conn_fail(cc, "GET %s%s: not a range digest answer", cc->url, q);
        rc = ARCA_E_INVALID;
    }
    json_decref(j);
    return rc;
}

/* Prints one JSON line (o's reference is stolen; NULL prints nothing). */
static void print_json(json_t *o)
{
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    if (text)
        printf("%s\n", text);
    free(text);
    json_decref(o);
}

/* The check of one peer against the local centre. */
struct check {
    const char *peer;
    bool json;
    uint64_t found;
    char parts[512]; /* the parts with divergent keys, comma-separated */
    const char *last_part;
};

static int on_found(void *arg, const char *part, const char *key, size_t len,
                    enum repo_diff_kind kind)
{
    struct check *ck = arg;
    char *hex = malloc(2 * len + 1);
    if (!hex)
        return -ENOMEM;
    hex_encode((const uint8_t *)key, len, hex);
    if (ck->json) {
        static const char *const names[] = {"only_here", "only_there", "differs"};
        print_json(json_pack("{s:s,s:s,s:s,s:s}", "peer", ck->peer, "part", part, "key", hex,
                             "status", names[kind]));
    } else {
        printf("%s %s: %s%s\n", part, hex,
               kind == REPO_DIFF_ONLY_A   ? "only here"
               : kind == REPO_DIFF_ONLY_B ? "only at "
                                          : "differs",
               kind == REPO_DIFF_ONLY_B ? ck->peer : "");
    }
    fflush(stdout);
    free(hex);
    ck->found++;
    if (ck->last_part != part) {
        size_t n = strlen(ck->parts);
        snprintf(ck->parts + n, sizeof(ck->parts) - n, "%s%s", n ? ", " : "", part);
        ck->last_part = part;
    }
    return 0;
}

/* The top-level answer: centre, state digest, and the parts by name. */
struct top {
    uint64_t state;
    size_t nparts;
    struct {
        const char *name;
        uint64_t count, digest;
    } parts[REPO_DIGEST_PARTS];
};

static int get_top(struct centre_conn *cc, json_t **keep, struct top *t)
{
    json_t *j = NULL;
    int rc = get_json(cc, "/api/v1/replication/digest", &j);
    if (rc != 0)
        return rc;
    *keep = j;
    json_t *parts = json_object_get(j, "parts");
    const char *centre = json_string_value(json_object_get(j, "centre"));
    if (!centre || !hex64(json_object_get(j, "state_digest"), &t->state)) {
        conn_fail(cc, "GET %s/api/v1/replication/digest: not a digest answer", cc->url);
        return ARCA_E_INVALID;
    }
    snprintf(cc->centre, sizeof(cc->centre), "%s", centre);
    if (!json_is_array(parts)) {
        conn_fail(cc, "%s answers no per-part digests (an arcad from before range digests?)",
                  cc->url);
        return ARCA_E_INVALID;
    }
    t->nparts = 0;
    for (size_t i = 0; i < json_array_size(parts) && t->nparts < REPO_DIGEST_PARTS; i++) {
        json_t *p = json_array_get(parts, i);
        const char *name = json_string_value(json_object_get(p, "part"));
        if (!name || !count_of(json_object_get(p, "count"), &t->parts[t->nparts].count) ||
            !hex64(json_object_get(p, "digest"), &t->parts[t->nparts].digest)) {
            conn_fail(cc, "GET %s/api/v1/replication/digest: a malformed part", cc->url);
            return ARCA_E_INVALID;
        }
        t->parts[t->nparts++].name = name;
    }
    return 0;
}

/* "peer NAME (URL)" or "the local arcad (URL)", for messages. */
static void describe(const struct centre_conn *cc, char *buf, size_t cap)
{
    if (cc->peer)
        snprintf(buf, cap, "peer %s (%s)", cc->name, cc->url);
    else
        snprintf(buf, cap, "the local arcad (%s)", cc->url);
}

/*
 * Narrows every part whose digests differ down to its divergent keys.  0, or
 * an error with *bad: the side whose err says why.
 */
static int narrow(struct centre_conn *local, const struct top *lt, struct centre_conn *peer,
                  const struct top *pt, struct check *ck, struct centre_conn **bad)
{
    int rc = 0;
    for (size_t i = 0; i < REPO_DIGEST_PARTS && rc == 0; i++) {
        const char *part = repo_digest_part_name(i);
        size_t a = 0, b = 0;
        while (a < lt->nparts && strcmp(lt->parts[a].name, part) != 0)
            a++;
        while (b < pt->nparts && strcmp(pt->parts[b].name, part) != 0)
            b++;
        if (a == lt->nparts || b == pt->nparts) {
            *bad = a == lt->nparts ? local : peer;
            conn_fail(*bad, "its digest has no part '%s' (another arcad version?)", part);
            return ARCA_E_INVALID;
        }
        if (lt->parts[a].count == pt->parts[b].count && lt->parts[a].digest == pt->parts[b].digest)
            continue;
        local->err[0] = peer->err[0] = '\0';
        rc = repo_range_diff(part, fetch_range, local, fetch_range, peer, on_found, ck);
        if (rc == 0)
            continue;
        *bad = local->err[0] ? local : peer;
        if (!(*bad)->err[0])
            conn_fail(*bad, "narrowing '%s' down failed: %s", part,
                      rc == ARCA_E_INVALID ? "the two centres' answers do not add up (arcads of "
                                             "different digest definitions?)"
                                           : arca_strerror(rc));
    }
    return rc;
}

/* Compares one peer with the local centre: 0 agree, 1 diverge, 2 could not tell. */
static int check_peer(struct centre_conn *local, const struct top *lt, struct centre_conn *peer,
                      bool as_json)
{
    struct check ck = {.peer = peer->name, .json = as_json};
    struct centre_conn *bad = peer;
    struct top pt;
    json_t *keep = NULL;
    char here[17], there[17], who[700];
    int status = 2;
    if (get_top(peer, &keep, &pt) != 0)
        goto out;
    snprintf(here, sizeof(here), "%016llx", (unsigned long long)lt->state);
    snprintf(there, sizeof(there), "%016llx", (unsigned long long)pt.state);
    if (lt->state != pt.state && narrow(local, lt, peer, &pt, &ck, &bad) != 0)
        goto out;
    status = lt->state == pt.state ? 0 : 1;
    if (as_json) {
        print_json(json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:b,s:I,s:s}", "peer", ck.peer, "url",
                             peer->url, "centre", peer->centre, "local_centre", local->centre,
                             "local_digest", here, "peer_digest", there, "agree", status == 0,
                             "divergent", (json_int_t)ck.found, "parts", ck.parts));
    } else if (status == 0) {
        printf("%s (%s, centre %s): in agreement, state digest %s\n", ck.peer, peer->url,
               peer->centre, here);
    } else if (ck.found > 0) {
        printf("%s (%s, centre %s): %llu divergent key%s in %s (state digest here %s, there "
               "%s)\n",
               ck.peer, peer->url, peer->centre, (unsigned long long)ck.found,
               ck.found == 1 ? "" : "s", ck.parts, here, there);
    } else {
        printf("%s (%s, centre %s): the state digests differ (here %s, there %s) but no key "
               "does now: the state changed during the check (replication in flight?); run it "
               "again\n",
               ck.peer, peer->url, peer->centre, here, there);
    }
out:
    if (status == 2) {
        describe(bad, who, sizeof(who));
        fprintf(stderr, PROG ": %s: %s\n", who, bad->err);
        if (as_json)
            print_json(
                json_pack("{s:s,s:s,s:s}", "peer", ck.peer, "url", peer->url, "error", bad->err));
    }
    fflush(stdout);
    json_decref(keep);
    return status;
}

/* Reads a one-line secret file, without its trailing blanks.  0, ARCA_E_INVALID or -errno. */
static int read_secret(const char *path, char *out, size_t cap)
{
    char *text = NULL;
    size_t len = 0;
    int rc = fs_read_small(path, 4096, &text, &len);
    if (rc != 0)
        return rc;
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' ' ||
                       text[len - 1] == '\t'))
        len--;
    if (len == 0 || len >= cap || memchr(text, '\n', len)) {
        rc = ARCA_E_INVALID;
    } else {
        memcpy(out, text, len);
        out[len] = '\0';
    }
    explicit_bzero(text, len);
    free(text);
    return rc;
}

/* The local arcad's URL from server.listen (and DATA/arcad.port for port 0). */
static int local_url(const struct arca_config *cfg, char *out, size_t cap)
{
    char host[130], path[PATH_MAX], port[16];
    const char *colon = strrchr(cfg->listen, ':');
    if (strcmp(cfg->listen, "off") == 0) {
        fprintf(stderr, PROG ": server.listen is off: the check talks to the local arcad over "
                             "its plain HTTP listener (server.listen, e.g. 127.0.0.1:8080)\n");
        return ARCA_E_CONFIG;
    }
    if (!colon || (size_t)(colon - cfg->listen) >= sizeof(host) - 2 || strlen(colon + 1) > 5) {
        fprintf(stderr, PROG ": server.listen: expected HOST:PORT, got '%s'\n", cfg->listen);
        return ARCA_E_CONFIG;
    }
    memcpy(host, cfg->listen, (size_t)(colon - cfg->listen));
    host[colon - cfg->listen] = '\0';
    snprintf(port, sizeof(port), "%s", colon + 1);
    /* A wildcard address is reached on loopback; a bare IPv6 address needs brackets. */
    if (!host[0] || !strcmp(host, "0.0.0.0"))
        snprintf(host, sizeof(host), "127.0.0.1");
    else if (!strcmp(host, "[::]") || !strcmp(host, "::"))
        snprintf(host, sizeof(host), "[::1]");
    else if (strchr(host, ':') && host[0] != '[') {
        memmove(host + 1, host, strlen(host) + 1);
        host[0] = '[';
        strcat(host, "]");
    }
    if (!strcmp(port, "0")) {
        char *text = NULL;
        size_t len = 0;
        long p = 0;
        snprintf(path, sizeof(path), "%s/arcad.port", cfg->data_dir);
        int rc = fs_read_small(path, 64, &text, &len);
        if (rc == 0) {
            char *end;
            p = strtol(text, &end, 10);
            if (end == text || p <= 0 || p > 65535)
                p = 0;
        }
        free(text);
        if (p == 0) {
            fprintf(stderr,
                    PROG ": server.listen has port 0, so the port is read from %s: %s (is arcad "
                         "running with this data directory?)\n",
                    path, rc ? arca_strerror(rc) : "it holds no port");
            return ARCA_E_CONFIG;
        }
        snprintf(port, sizeof(port), "%ld", p);
    }
    snprintf(out, cap, "http://%s:%s", host, port);
    return 0;
}

/* Sets up the connection to one peer from its [peer.NAME] section. */
static int peer_setup(const struct arca_config *cfg, const struct config_peer *p,
                      struct centre_conn *cc)
{
    char token[160] = "";
    cc->name = p->name;
    cc->peer = p;
    cc->connect_timeout = (long)cfg->repl_connect_timeout;
    snprintf(cc->url, sizeof(cc->url), "%s", p->url);
    if (p->token_file[0]) {
        int rc = read_secret(p->token_file, token, sizeof(token));
        if (rc != 0) {
            fprintf(stderr, PROG ": peer %s: cannot read token_file %s: %s\n", p->name,
                    p->token_file, rc == ARCA_E_INVALID ? "not one token" : arca_strerror(rc));
            return ARCA_E_CONFIG;
        }
    } else {
        snprintf(token, sizeof(token), "%s", p->token);
    }
    if (token[0])
        snprintf(cc->auth, sizeof(cc->auth), "Authorization: Bearer %s", token);
    explicit_bzero(token, sizeof(token));
    if (!(cc->curl = curl_easy_init()))
        return -ENOMEM;
    return 0;
}

static void conn_cleanup(struct centre_conn *cc)
{
    if (cc->curl)
        curl_easy_cleanup(cc->curl);
    cc->curl = NULL;
    explicit_bzero(cc->auth, sizeof(cc->auth));
}

int cli_repl(const struct arca_config *cfg, const char *sub, const char *peer_name, bool as_json)
{
    struct centre_conn local = {.name = "local"}, *peers = NULL;
    struct top lt;
    json_t *keep = NULL;
    char path[PATH_MAX], token[160], who[700];
    size_t npeers = 0;
    int status = 2, rc;
    bool curl_up = false;

    if (strcmp(sub, "verify") != 0) {
        fprintf(stderr, "arcad replication: unknown subcommand '%s' (verify)\n", sub);
        return 2;
    }
    if (cfg->npeers == 0) {
        fprintf(stderr, PROG ": no [peer.NAME] section in the config: nothing to compare with "
                             "(give --config FILE)\n");
        return 2;
    }
    if (peer_name) {
        bool known = false;
        for (size_t i = 0; i < cfg->npeers; i++)
            known = known || strcmp(cfg->peers[i].name, peer_name) == 0;
        if (!known) {
            fprintf(stderr, PROG ": no [peer.%s] in the config (", peer_name);
            for (size_t i = 0; i < cfg->npeers; i++)
                fprintf(stderr, "%s%s", i ? ", " : "", cfg->peers[i].name);
            fprintf(stderr, ")\n");
            return 2;
        }
    }
    if (local_url(cfg, local.url, sizeof(local.url)) != 0)
        return 2;
    snprintf(path, sizeof(path), "%s/admin.token", cfg->data_dir);
    if ((rc = read_secret(path, token, sizeof(token))) != 0) {
        fprintf(stderr, PROG ": cannot read the admin token %s: %s\n", path,
                rc == ARCA_E_INVALID ? "not one token" : arca_strerror(rc));
        return 2;
    }
    snprintf(local.auth, sizeof(local.auth), "Authorization: Bearer %s", token);
    explicit_bzero(token, sizeof(token));
    local.connect_timeout = (long)cfg->repl_connect_timeout;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        fprintf(stderr, PROG ": libcurl initialisation failed\n");
        goto out;
    }
    curl_up = true;
    peers = calloc(cfg->npeers, sizeof(*peers));
    if (!peers || !(local.curl = curl_easy_init())) {
        fprintf(stderr, PROG ": out of memory\n");
        goto out;
    }
    for (size_t i = 0; i < cfg->npeers; i++) {
        if (peer_name && strcmp(cfg->peers[i].name, peer_name) != 0)
            continue;
        if (peer_setup(cfg, &cfg->peers[i], &peers[npeers++]) != 0)
            goto out;
    }
    if (get_top(&local, &keep, &lt) != 0) {
        describe(&local, who, sizeof(who));
        fprintf(stderr, PROG ": %s: %s (is arcad running with this configuration?)\n", who,
                local.err);
        if (as_json)
            print_json(json_pack("{s:n,s:s,s:s}", "peer", "url", local.url, "error", local.err));
        goto out;
    }
    status = 0;
    for (size_t i = 0; i < npeers; i++) {
        int s = check_peer(&local, &lt, &peers[i], as_json);
        status = s > status ? s : status;
    }
out:
    json_decref(keep);
    for (size_t i = 0; i < npeers; i++)
        conn_cleanup(&peers[i]);
    free(peers);
    conn_cleanup(&local);
    if (curl_up)
        curl_global_cleanup();
    return status;
}
