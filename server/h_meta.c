/*
 * /api/v1/repos[/{repo}[/{name}[/{version}]]]: paginated listings, read
 * through index iterators one page at a time.
 */
#include "arca_err.h"
#include "auth.h"
#include "coord.h"
#include "httputil.h"
#include "lifecycle.h"
#include "repo.h"
#include "server_int.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIMIT_DEFAULT 100
#define LIMIT_MAX 1000

json_t *artifact_to_json(const struct artifact *a);

struct page {
    size_t limit;
    char cursor[REPO_CURSOR_MAX];
    json_t *items;
    struct conn *c;
};

/*
 * The value of query parameter key, percent-decoded into out (cap bytes);
 * false when absent.  "key" alone is the empty value.  *bad is set when it is
 * too long, malformed, holds a NUL or the parameter is given more than once
 * (which of two values counts would be a guess).
 */
bool query_param(struct conn *c, const char *key, char *out, size_t cap, bool *bad)
{
    const char *q = conn_query(c);
    size_t kl = strlen(key);
    bool found = false, wrong = false;
    while (*q) {
        const char *amp = strchr(q, '&');
        size_t len = amp ? (size_t)(amp - q) : strlen(q);
        if (len >= kl && memcmp(q, key, kl) == 0 && (len == kl || q[kl] == '=')) {
            size_t dl, vl = len == kl ? 0 : len - kl - 1;
            wrong = wrong || found || vl >= cap || url_decode(q + len - vl, vl, out, &dl) != 0 ||
                    strlen(out) != dl;
            found = true;
        }
        q = amp ? amp + 1 : q + len;
    }
    if (wrong) {
        *bad = true;
        if (cap)
            out[0] = '\0';
    }
    return found;
}

int page_query(struct conn *c, size_t *limit, char *cursor)
{
    char buf[16];
    bool bad = false;
    *limit = LIMIT_DEFAULT;
    cursor[0] = '\0';
    if (query_param(c, "limit", buf, sizeof(buf), &bad)) {
        /* Digits only: no sign, no space, at most 4 of them. */
        size_t digits = strspn(buf, "0123456789");
        unsigned long n = !bad && buf[0] && !buf[digits] && digits <= 4 ? strtoul(buf, NULL, 10) : 0;
        if (n < 1 || n > LIMIT_MAX) {
            resp_error(c, 400, "bad_request", NULL,
                       "limit must be a number 1..%d, given once", LIMIT_MAX);
            return -1;
        }
        *limit = n;
    }
    if (query_param(c, "cursor", cursor, REPO_CURSOR_MAX, &bad) && bad) {
        cursor[0] = '\0';
        resp_error(c, 400, "bad_request", NULL, "malformed cursor, or more than one");
        return -1;
    }
    return 0;
}

void resp_list_error(struct conn *c, int rc, const char *what)
{
    if (rc == ARCA_E_INVALID)
        resp_error(c, 400, "bad_request", NULL, "the cursor is not one this listing gave out");
    else
        resp_error(c, 500, "internal", NULL, "%s failed: %s", what, arca_strerror(rc));
}

json_t *time_json(uint64_t ms)
{
    char buf[32];
    if (!ms)
        return json_null();
    time_format_iso(ms, buf);
    return json_string(buf);
}

json_t *next_cursor_json(const char *next)
{
    return next[0] ? json_string(next) : json_null();
}

/* A repository is listed only to those who may read it. */
static bool may_read_repo(void *arg, const char *repo)
{
    struct page *pg = arg;
    return auth_allows(conn_server(pg->c)->auth, conn_principal(pg->c), "read", repo);
}

static int add_repo(void *arg, const struct repo_entry *e)
{
    struct page *pg = arg;
    char created[32];
    time_format_iso(e->created_ms, created);
    json_array_append_new(pg->items, json_pack("{s:s,s:s}", "repo", e->repo, "created", created));
    return 0;
}

static int add_name(void *arg, const struct name_entry *e)
{
    struct page *pg = arg;
    char created[32];
    time_format_iso(e->created_ms, created);
    json_array_append_new(pg->items, json_pack("{s:s,s:s}", "name", e->name, "created", created));
    return 0;
}

static int add_version(void *arg, const struct version_entry *e)
{
    struct page *pg = arg;
    char created[32];
    const struct version_state *st = e->st;
    time_format_iso(st->created_ms, created);
    json_array_append_new(pg->items,
                          json_pack("{s:s,s:s,s:I,s:I,s:s,s:b}", "version", e->version, "created",
                                    created, "files", (json_int_t)st->file_count, "bytes",
                                    (json_int_t)st->total_bytes, "stage",
                                    repo_stage_of(conn_server(pg->c)->db, st), "revoked",
                                    st->revoked_ms != 0));
    return 0;
}

static int add_file(void *arg, const struct artifact *a)
{
    struct page *pg = arg;
    json_array_append_new(pg->items, artifact_to_json(a));
    return 0;
}

static void meta_headers(struct conn *c)
{
    if (reject_unless_get(c))
        return;
    struct server *srv = conn_server(c);
    const char *base = "/api/v1/repos";
    size_t blen = strlen(base);
    const char *path = conn_path(c) + blen;
    size_t len = conn_path_len(c) - blen;
    if (len > 1 && path[len - 1] == '/' && path[len - 2] != '/')
        len--; /* one trailing slash names the same listing, as "/api/v1/repos/" does */
    char *buf = malloc(len + 8);
    char *segs[4];
    size_t lens[4];
    struct page pg = {0};
    json_t *body = NULL;
    const char *why = NULL;
    int rc = 0;
    if (!buf) {
        resp_error(c, 500, "internal", NULL, "out of memory");
        return;
    }
    int n = len == 0 ? 0 : path_split(path, len, buf, segs, lens, 4);
    if (n > 3)
        n = ARCA_E_TOOBIG; /* "…/{version}/{x}/": no listing is that deep */
    if (n < 0) {
        resp_error(c, n == ARCA_E_TOOBIG ? 404 : 400, n == ARCA_E_TOOBIG ? "not_found" : "invalid_path",
                   NULL, n == ARCA_E_TOOBIG ? "no such listing" : "malformed percent-escape");
        goto out;
    }
    for (int i = 0; i < n; i++) {
        int bad = strlen(segs[i]) != lens[i] ? (why = "a segment contains a NUL byte", 1)
                  : i == 0 ? coord_repo_check(segs[i], lens[i], &why)
                           : coord_segment_check(segs[i], lens[i], &why);
        if (bad) {
            resp_error(c, 400, "invalid_path", NULL, "invalid path: %s", why);
            goto out;
        }
    }
    if (n == 0 && !conn_principal(c)->authenticated) {
        resp_error(c, 401, "unauthorized", NULL, "listing repositories needs a credential");
        goto out;
    }
    if (n > 0 && !conn_authorize(c, "read", segs[0]))
        goto out;
    if (page_query(c, &pg.limit, pg.cursor) != 0)
        goto out;
    pg.c = c;
    pg.items = json_array();
    char next[REPO_CURSOR_MAX] = "";
    repo_db *db = srv->db;
    switch (n) {
    case 0:
        rc = repo_list_repos(db, pg.cursor, pg.limit, may_read_repo, add_repo, &pg, next);
        if (rc == 0)
            body = json_pack("{s:O}", "items", pg.items);
        break;
    case 1:
        rc = repo_repo_exists(db, segs[0]);
        if (rc == 0)
            rc = repo_list_names(db, segs[0], pg.cursor, pg.limit, add_name, &pg, next);
        if (rc == 0)
            body = json_pack("{s:s,s:O}", "repo", segs[0], "items", pg.items);
        break;
    case 2:
        rc = repo_name_exists(db, segs[0], segs[1]);
        if (rc == 0)
            rc = repo_list_versions(db, segs[0], segs[1], pg.cursor, pg.limit, add_version, &pg,
                                    next);
        if (rc == 0)
            body = json_pack("{s:s,s:s,s:O}", "repo", segs[0], "name", segs[1], "items", pg.items);
        break;
    default:
        rc = repo_version_exists(db, segs[0], segs[1], segs[2]);
        if (rc == 0)
            rc = repo_list_files(db, segs[0], segs[1], segs[2], pg.cursor, pg.limit, add_file, &pg,
                                 next);
        if (rc == 0) {
            struct version_state vs;
            json_t *props = NULL;
            rc = repo_get_version(db, segs[0], segs[1], segs[2], &vs);
            if (rc == 0)
                rc = repo_get_properties(db, segs[0], segs[1], segs[2], &props);
            if (rc == 0) {
                body = version_state_json(db, segs[0], segs[1], segs[2], &vs);
                json_object_set_new(body, "properties", props);
                json_object_set(body, "items", pg.items);
            }
        }
        break;
    }
    if (rc == ARCA_E_NOTFOUND) {
        resp_error(c, 404, "not_found", NULL, "no such %s",
                   n == 1 ? "repository" : n == 2 ? "artifact" : "version");
        goto out;
    }
    if (rc != 0 || !body) {
        resp_list_error(c, rc ? rc : -ENOMEM, "listing");
        goto out;
    }
    json_object_set_new(body, "next_cursor", next_cursor_json(next));
    resp_json(c, 200, body);
    body = NULL;
out:
    json_decref(body);
    json_decref(pg.items);
    free(buf);
}

const struct handler meta_handler = {.route = "metadata", .on_headers = meta_headers};
