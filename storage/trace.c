/*
 * The read side of a version's life: state, properties, build record,
 * history, the newest version in a stage, deployments, search and trace.
 * Everything reads index entries that apply maintained for the purpose; no
 * query here scans all versions or all events to find a checksum or a
 * property.
 */
#include "lifecycle.h"
#include "repo_int.h"

#include "arca_err.h"
#include "event_int.h"
#include "hlc.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HISTORY_MAX 10000   /* events read for one version's trace */
#define TRACE_FILES_MAX 1000
#define TRACE_COORDS_MAX 1000
#define SEARCH_SCAN_MAX 20000 /* index entries read for one page of search */
#define LATEST_SCAN_MAX 10000

/* ---- iteration with cursors ------------------------------------------- */

/*
 * Calls cb for every key under prefix after the cursor (tag + hex of the
 * suffix after the prefix).  cb returns 1 when it produced an item, 0 when
 * it skipped the entry, or an error.  Stops after limit items or max_scan
 * entries; next gets the cursor to continue from ("" at the end).
 */
typedef int (*walk_fn)(void *ctx, const char *suffix, size_t slen, const char *val, size_t vlen);

static int walk(repo_db *db, enum repo_cf cf, const char *prefix, size_t plen, char tag,
                const char *after, size_t limit, size_t max_scan, walk_fn cb, void *ctx,
                char *next, uint64_t *scanned)
{
    char seek[KEY_MAX + 64];
    size_t seeklen = plen, count = 0, scan = 0;
    int rc = 0;
    if (next)
        next[0] = '\0';
    memcpy(seek, prefix, plen);
    if (after && after[0]) {
        size_t alen = strlen(after), slen = (alen - 1) / 2;
        if (after[0] != tag || alen < 3 || (alen - 1) % 2 || plen + slen > sizeof(seek) ||
            hex_decode(after + 1, alen - 1, (uint8_t *)seek + plen, slen) != 0)
            return ARCA_E_INVALID;
        seeklen += slen;
    }
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db->db, db->ropts, db->cf[cf]);
    rocksdb_iter_seek(it, seek, seeklen);
    for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl);
        if (kl < plen || memcmp(k, prefix, plen) != 0)
            break;
        if (seeklen > plen && kl == seeklen && memcmp(k, seek, kl) == 0)
            continue; /* the cursor's own entry was on the previous page */
        if (count == limit || scan == max_scan) {
            /* More remain: the cursor is the last entry read. */
            if (next && 1 + 2 * (seeklen - plen) < REPO_CURSOR_MAX) {
                next[0] = tag;
                hex_encode((const uint8_t *)seek + plen, seeklen - plen, next + 1);
            }
            break;
        }
        const char *v = rocksdb_iter_value(it, &vl);
        scan++;
        rc = cb(ctx, k + plen, kl - plen, v, vl);
        if (rc < 0)
            break;
        count += (size_t)rc;
        rc = 0;
        if (kl <= sizeof(seek)) {
            memcpy(seek, k, kl);
            seeklen = kl;
        }
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    if (err && rc == 0)
        rc = db_error("iterate", err);
    else
        rocksdb_free(err);
    rocksdb_iter_destroy(it);
    if (scanned)
        *scanned += scan;
    return rc;
}

/* Splits a '\0'-separated key into at most n strings copied into buf. */
static int split_key(const char *k, size_t kl, char *buf, size_t cap, const char **parts, int n)
{
    if (kl + 1 > cap)
        return -1;
    memcpy(buf, k, kl);
    buf[kl] = '\0';
    int got = 0;
    size_t start = 0;
    for (size_t i = 0; i <= kl && got < n; i++) {
        if (i == kl || buf[i] == '\0') {
            parts[got++] = buf + start;
            start = i + 1;
            if (i == kl)
                break;
        }
    }
    return got;
}

static json_t *iso_json(uint64_t ms)
{
    char buf[32];
    if (!ms)
        return json_null();
    time_format_iso(ms, buf);
    return json_string(buf);
}

/* ---- simple reads ----------------------------------------------------- */

int repo_get_version(repo_db *db, const char *repo, const char *name, const char *version,
                     struct version_state *out)
{
    char key[KEY_MAX], *v = NULL;
    size_t vlen = 0;
    struct coord c;
    const char *why;
    if (coord_set(&c, repo, name, version, NULL, &why) != 0)
        return ARCA_E_INVALID;
    int rc = db_get(db, CF_VERSIONS, key, key_make(key, false, repo, name, version, NULL), &v,
                    &vlen);
    if (rc == 0)
        rc = rec_vstate_decode(v, vlen, out);
    rocksdb_free(v);
    return rc;
}

struct props_ctx {
    json_t *out;
};

static int add_prop(void *vctx, const char *s, size_t sl, const char *v, size_t vl)
{
    struct props_ctx *ctx = vctx;
    char k[PROP_KEY_MAX + 1];
    if (sl > PROP_KEY_MAX)
        return 0;
    memcpy(k, s, sl);
    k[sl] = '\0';
    json_t *o = json_loadb(v, vl, 0, NULL);
    json_t *val = json_object_get(o, "v");
    if (json_is_string(val))
        json_object_set(ctx->out, k, val);
    json_decref(o);
    return 1;
}

int repo_get_properties(repo_db *db, const char *repo, const char *name, const char *version,
                        json_t **out)
{
    char prefix[KEY_MAX];
    size_t plen = key_make(prefix, true, repo, name, version, NULL);
    struct props_ctx ctx = {json_object()};
    int rc = walk(db, CF_PROPS, prefix, plen, 'p', NULL, SIZE_MAX, SIZE_MAX, add_prop, &ctx,
                  NULL, NULL);
    if (rc != 0) {
        json_decref(ctx.out);
        return rc;
    }
    *out = ctx.out;
    return 0;
}

int repo_get_build(repo_db *db, const char *repo, const char *name, const char *version,
                   json_t **out)
{
    char key[KEY_MAX], *v = NULL;
    size_t vlen = 0;
    int rc = db_get(db, CF_BUILDS, key, key_make(key, false, repo, name, version, NULL), &v,
                    &vlen);
    if (rc == 0) {
        *out = json_loadb(v, vlen, 0, NULL);
        if (!*out)
            rc = ARCA_E_DB;
    }
    rocksdb_free(v);
    return rc;
}

static json_t *event_load(repo_db *db, uint64_t seq)
{
    char *text = NULL;
    if (event_read(db, seq, &text) != 0)
        return NULL;
    json_t *o = json_loads(text, 0, NULL);
    free(text);
    return o;
}

struct hist_ctx {
    repo_db *db;
    int (*cb)(void *arg, json_t *event);
    void *arg;
};

static int add_hist(void *vctx, const char *s, size_t sl, const char *v, size_t vl)
{
    struct hist_ctx *ctx = vctx;
    (void)v;
    (void)vl;
    if (sl != 8)
        return 0;
    json_t *ev = event_load(ctx->db, get_be64((const uint8_t *)s));
    if (!ev)
        return ARCA_E_DB;
    int rc = ctx->cb(ctx->arg, ev);
    return rc < 0 ? rc : 1;
}

int repo_version_history(repo_db *db, const char *repo, const char *name, const char *version,
                         const char *after, size_t limit,
                         int (*cb)(void *arg, json_t *event), void *arg, char *next)
{
    char prefix[KEY_MAX];
    size_t plen = key_make(prefix, true, repo, name, version, NULL);
    struct hist_ctx ctx = {db, cb, arg};
    return walk(db, CF_VEVENTS, prefix, plen, 'h', after, limit, SIZE_MAX, add_hist, &ctx, next,
                NULL);
}

struct latest_ctx {
    repo_db *db;
    int want;
    char *version;
    bool found;
};

static int check_latest(void *vctx, const char *s, size_t sl, const char *v, size_t vl)
{
    struct latest_ctx *ctx = vctx;
    struct version_state vs;
    if (sl <= 8 || sl - 8 > COORD_SEGMENT_MAX || rec_vstate_decode(v, vl, &vs) != 0)
        return 0;
    int rank = repo_stage_rank(ctx->db, &vs);
    if (rank < ctx->want || vs.revoked_ms || vs.deleted_ms)
        return 0;
    memcpy(ctx->version, s + 8, sl - 8);
    ctx->version[sl - 8] = '\0';
    ctx->found = true;
    return 1;
}

int repo_latest_in_stage(repo_db *db, const char *repo, const char *name, const char *stage,
                         char *version)
{
    char prefix[KEY_MAX];
    struct latest_ctx ctx = {db, stages_rank(&db->policy, stage), version, false};
    if (ctx.want < 0)
        return ARCA_E_NOTFOUND;
    size_t plen = key_make(prefix, true, repo, name, NULL, NULL);
    int rc = walk(db, CF_VTIME, prefix, plen, 'l', NULL, 1, LATEST_SCAN_MAX, check_latest, &ctx,
                  NULL, NULL);
    if (rc != 0)
        return rc;
    return ctx.found ? 0 : ARCA_E_NOTFOUND;
}

struct dep_ctx {
    int (*cb)(void *arg, json_t *rec);
    void *arg;
};

static int add_dep(void *vctx, const char *s, size_t sl, const char *v, size_t vl)
{
    struct dep_ctx *ctx = vctx;
    (void)s;
    (void)sl;
    json_t *o = json_loadb(v, vl, 0, NULL);
    if (!o)
        return ARCA_E_DB;
    json_t *ms = json_object_get(o, "time_ms");
    json_object_set_new(o, "time", iso_json(json_is_integer(ms) ? (uint64_t)json_integer_value(ms)
                                                                : 0));
    json_object_del(o, "time_ms");
    int rc = ctx->cb(ctx->arg, o);
    return rc < 0 ? rc : 1;
}

int repo_list_deployments(repo_db *db, const char *environment, const char *after, size_t limit,
                          int (*cb)(void *arg, json_t *rec), void *arg, char *next)
{
    char prefix[ENV_MAX + 2];
    size_t plen = 0;
    struct dep_ctx ctx = {cb, arg};
    if (environment) {
        plen = strlen(environment);
        if (plen > ENV_MAX)
            return ARCA_E_INVALID;
        memcpy(prefix, environment, plen);
        prefix[plen++] = '\0';
    }
    return walk(db, CF_DEPLOYS, prefix, plen, 'd', after, limit, SIZE_MAX, add_dep, &ctx, next,
                NULL);
}

/* ---- search ----------------------------------------------------------- */

struct search_ctx {
    repo_db *db;
    const struct search_query *q;
    int (*cb)(void *arg, json_t *item);
    void *arg;
    enum { DRIVE_CONTENT, DRIVE_PROP, DRIVE_STAGE, DRIVE_VERSIONS } drive;
    size_t vskip; /* DRIVE_VERSIONS: segments of the prefix already fixed */
    const char *fixed[2];
};

static bool prop_is(repo_db *db, const char *repo, const char *name, const char *version,
                    const char *k, const char *want)
{
    char *cur = prop_current(db, repo, name, version, k);
    bool ok = cur && strcmp(cur, want) == 0;
    free(cur);
    return ok;
}

static int consider(struct search_ctx *ctx, const char *repo, const char *name,
                    const char *version, const char *path, const char *sha_hex)
{
    const struct search_query *q = ctx->q;
    struct version_state vs;
    if (repo_get_version(ctx->db, repo, name, version, &vs) != 0 || vs.deleted_ms)
        return 0;
    const char *stage = repo_stage_of(ctx->db, &vs);
    if ((q->repo && strcmp(q->repo, repo) != 0) || (q->name && strcmp(q->name, name) != 0) ||
        (q->stage && strcmp(q->stage, stage) != 0) ||
        (q->created_after && vs.created_ms <= q->created_after) ||
        (q->created_before && vs.created_ms >= q->created_before))
        return 0;
    if (q->prop_key && ctx->drive != DRIVE_PROP &&
        !prop_is(ctx->db, repo, name, version, q->prop_key, q->prop_value))
        return 0;
    for (size_t i = 0; i < q->nextra; i++)
        if (!prop_is(ctx->db, repo, name, version, q->extra_keys[i], q->extra_values[i]))
            return 0;
    json_t *item = json_pack("{s:s,s:s,s:s,s:s,s:o,s:I,s:I,s:b}", "repo", repo, "name", name,
                             "version", version, "stage", stage, "created",
                             iso_json(vs.created_ms), "file_count", (json_int_t)vs.file_count,
                             "total_bytes", (json_int_t)vs.total_bytes, "revoked",
                             vs.revoked_ms != 0);
    if (!item)
        return -ENOMEM;
    if (path) {
        json_object_set_new(item, "path", json_string(path));
        json_object_set_new(item, "sha256", json_string(sha_hex));
    }
    int rc = ctx->cb(ctx->arg, item);
    return rc < 0 ? rc : 1;
}

static int search_entry(void *vctx, const char *s, size_t sl, const char *v, size_t vl)
{
    struct search_ctx *ctx = vctx;
    char buf[KEY_MAX + 8];
    const char *parts[4];
    (void)v;
    (void)vl;
    switch (ctx->drive) {
    case DRIVE_CONTENT: {
        char hex[65];
        if (split_key(s, sl, buf, sizeof(buf), parts, 4) != 4)
            return 0;
        hex_encode(ctx->q->sha256, 32, hex);
        return consider(ctx, parts[0], parts[1], parts[2], parts[3], hex);
    }
    case DRIVE_PROP:
    case DRIVE_STAGE:
        if (split_key(s, sl, buf, sizeof(buf), parts, 3) != 3)
            return 0;
        return consider(ctx, parts[0], parts[1], parts[2], NULL, NULL);
    case DRIVE_VERSIONS: {
        size_t n = 3 - ctx->vskip;
        if (split_key(s, sl, buf, sizeof(buf), parts + ctx->vskip, (int)n) != (int)n)
            return 0;
        for (size_t i = 0; i < ctx->vskip; i++)
            parts[i] = ctx->fixed[i];
        return consider(ctx, parts[0], parts[1], parts[2], NULL, NULL);
    }
    }
    return 0;
}

int repo_search(repo_db *db, const struct search_query *q, const char *after, size_t limit,
                int (*cb)(void *arg, json_t *item), void *arg, char *next, uint64_t *scanned)
{
    char prefix[KEY_MAX + PROP_KEY_MAX + PROP_VALUE_MAX];
    size_t plen = 0;
    uint8_t sha[32];
    struct search_ctx ctx = {.db = db, .q = q, .cb = cb, .arg = arg};
    struct search_query qq = *q;
    enum repo_cf cf;
    char tag;
    *scanned = 0;
    if (!q->sha256 && q->sha1) {
        int rc = repo_find_sha1(db, q->sha1, sha);
        if (rc == ARCA_E_NOTFOUND) {
            next[0] = '\0';
            return 0;
        }
        if (rc != 0)
            return rc;
        qq.sha256 = sha;
        ctx.q = &qq;
    }
    if (ctx.q->sha256) {
        ctx.drive = DRIVE_CONTENT;
        cf = CF_BLOBREFS;
        tag = 'c';
        memcpy(prefix, ctx.q->sha256, 32);
        plen = 32;
    } else if (q->prop_key) {
        size_t kl = strlen(q->prop_key), vl = strlen(q->prop_value);
        if (kl > PROP_KEY_MAX || vl > PROP_VALUE_MAX)
            return ARCA_E_INVALID;
        ctx.drive = DRIVE_PROP;
        cf = CF_PROPIDX;
        tag = 'q';
        memcpy(prefix, q->prop_key, kl);
        prefix[kl] = '\0';
        memcpy(prefix + kl + 1, q->prop_value, vl);
        prefix[kl + 1 + vl] = '\0';
        plen = kl + vl + 2;
    } else if (q->stage) {
        size_t sl = strlen(q->stage);
        if (sl >= STAGE_NAME_MAX)
            return ARCA_E_INVALID;
        ctx.drive = DRIVE_STAGE;
        cf = CF_STAGEIDX;
        tag = 's';
        memcpy(prefix, q->stage, sl);
        prefix[sl] = '\0';
        plen = sl + 1;
    } else {
        ctx.drive = DRIVE_VERSIONS;
        cf = CF_VERSIONS;
        tag = 'w';
        if (q->repo && q->name) {
            plen = key_make(prefix, true, q->repo, q->name, NULL, NULL);
            ctx.vskip = 2;
        } else if (q->repo) {
            plen = key_make(prefix, true, q->repo, NULL, NULL, NULL);
            ctx.vskip = 1;
        }
        ctx.fixed[0] = q->repo;
        ctx.fixed[1] = q->name;
    }
    /* The first stage has no stage index entries until a version leaves it: walk versions. */
    if (ctx.drive == DRIVE_STAGE && stages_rank(&db->policy, q->stage) == 0) {
        ctx.drive = DRIVE_VERSIONS;
        cf = CF_VERSIONS;
        tag = 'w';
        plen = 0;
        ctx.vskip = 0;
        if (q->repo && q->name) {
            plen = key_make(prefix, true, q->repo, q->name, NULL, NULL);
            ctx.vskip = 2;
        } else if (q->repo) {
            plen = key_make(prefix, true, q->repo, NULL, NULL, NULL);
            ctx.vskip = 1;
        }
        ctx.fixed[0] = q->repo;
        ctx.fixed[1] = q->name;
    }
    return walk(db, cf, prefix, plen, tag, after, limit, SEARCH_SCAN_MAX, search_entry, &ctx,
                next, scanned);
}

/* ---- trace ------------------------------------------------------------ */

static json_t *event_ref(json_t *ev)
{
    return json_pack("{s:O,s:O,s:O,s:O}", "seq", json_object_get(ev, "seq"), "origin",
                     json_object_get(ev, "origin"), "origin_seq",
                     json_object_get(ev, "origin_seq"), "hash", json_object_get(ev, "hash"));
}

static json_t *event_time(json_t *ev)
{
    json_t *h = json_object_get(ev, "hlc");
    return iso_json(json_is_integer(h) ? HLC_MS((uint64_t)json_integer_value(h)) : 0);
}

/*
 * A version's trace sorts its events into lists of facts.  Each action
 * names its list and the details it copies into the fact; uploads that set
 * properties also count as a property change.
 */
enum trace_list { TL_UPLOADS, TL_PROMOTIONS, TL_REVOCATIONS, TL_DELETIONS, TL_DEPLOYMENTS,
                  TL_PROPS, TL_BUILDS, TL_COUNT };

static const char *const trace_list_names[TL_COUNT] = {
    "uploads", "promotions", "revocations", "deletions", "deployments", "property_changes",
    "build_records"};

static const struct {
    const char *action;
    enum trace_list list;
    const char *keys[5];
} trace_facts[] = {
    {"artifact.put", TL_UPLOADS, {"path", "sha256", "size"}},
    {"version.promote", TL_PROMOTIONS, {"from", "to", "reason", "gates"}},
    {"version.revoke", TL_REVOCATIONS, {"reason", "stage"}},
    {"version.delete", TL_DELETIONS, {"reason"}},
    {"deployment.record", TL_DEPLOYMENTS, {"environment", "target", "stage"}},
    {"property.set", TL_PROPS, {"changes", "previous"}},
    {"build.put", TL_BUILDS, {"replaced"}},
};

struct vtrace {
    json_t *lists[TL_COUNT];
    json_t *events;
};

static int trace_event(void *arg, json_t *ev)
{
    struct vtrace *t = arg;
    const char *action = json_string_value(json_object_get(ev, "action"));
    json_t *d = json_object_get(ev, "details");
    json_array_append(t->events, json_object_get(ev, "seq"));
    for (size_t i = 0; action && i < sizeof(trace_facts) / sizeof(trace_facts[0]); i++) {
        if (strcmp(action, trace_facts[i].action) != 0)
            continue;
        json_t *fact = json_pack("{s:O,s:o,s:o}", "by", json_object_get(ev, "actor"), "at",
                                 event_time(ev), "event", event_ref(ev));
        if (!fact)
            break;
        json_t *props = json_object_get(d, "properties");
        if (strcmp(action, "artifact.put") == 0 && json_object_size(props) > 0) {
            json_t *pf = json_deep_copy(fact);
            json_object_set(pf, "changes", props);
            json_array_append_new(t->lists[TL_PROPS], pf);
        }
        for (size_t k = 0; k < 5 && trace_facts[i].keys[k]; k++)
            json_object_set(fact, trace_facts[i].keys[k],
                            json_object_get(d, trace_facts[i].keys[k]));
        json_array_append_new(t->lists[trace_facts[i].list], fact);
        break;
    }
    json_decref(ev);
    return 0;
}

struct conflicts_ctx {
    repo_db *db;
    const char *repo, *name, *version;
    json_t *items;
};

/* Conflict records under a version: suffix = path \0 origin \0 BE64(hlc). */
static int add_conflict(void *vctx, const char *s, size_t sl, const char *v, size_t vl)
{
    struct conflicts_ctx *ctx = vctx;
    const char *nul = memchr(s, '\0', sl);
    if (!nul)
        return 0;
    char path[COORD_PATH_MAX + 1];
    size_t pl = (size_t)(nul - s);
    if (pl > COORD_PATH_MAX)
        return 0;
    memcpy(path, s, pl);
    path[pl] = '\0';
    json_t *o = json_loadb(v, vl, 0, NULL);
    if (!o)
        return 0;
    json_object_set_new(o, "path", json_string(path));
    json_t *h = json_object_get(o, "hlc");
    json_object_set_new(o, "at", iso_json(json_is_integer(h)
                                              ? HLC_MS((uint64_t)json_integer_value(h)) : 0));
    struct coord c;
    struct artifact a;
    const char *why;
    if (coord_set(&c, ctx->repo, ctx->name, ctx->version, path, &why) == 0 &&
        repo_get_artifact(ctx->db, &c, &a) == 0) {
        char hex[65];
        hex_encode(a.dig.sha256, 32, hex);
        json_object_set_new(o, "winner",
                            json_pack("{s:s,s:s,s:I}", "sha256", hex, "origin", a.origin, "hlc",
                                      (json_int_t)a.hlc));
    }
    json_array_append_new(ctx->items, o);
    return 1;
}

static int version_trace(repo_db *db, const char *repo, const char *name, const char *version,
                         bool with_uploads, json_t **out)
{
    struct version_state vs;
    int rc = repo_get_version(db, repo, name, version, &vs);
    if (rc != 0)
        return rc;
    struct vtrace t = {.events = json_array()};
    for (int i = 0; i < TL_COUNT; i++)
        t.lists[i] = json_array();
    char next[REPO_CURSOR_MAX];
    rc = repo_version_history(db, repo, name, version, NULL, HISTORY_MAX, trace_event, &t, next);
    json_t *build = NULL, *props = NULL;
    if (rc == 0 && (rc = repo_get_build(db, repo, name, version, &build)) == ARCA_E_NOTFOUND)
        rc = 0;
    if (rc == 0)
        rc = repo_get_properties(db, repo, name, version, &props);
    if (rc != 0) {
        for (int i = 0; i < TL_COUNT; i++)
            json_decref(t.lists[i]);
        json_decref(t.events);
        json_decref(build);
        return rc;
    }
    const char *stage = repo_stage_of(db, &vs);
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:o,s:I,s:I}", "repo", repo, "name", name, "version",
                          version, "stage", stage, "created", iso_json(vs.created_ms),
                          "file_count", (json_int_t)vs.file_count, "total_bytes",
                          (json_int_t)vs.total_bytes);
    json_object_set_new(o, "revoked",
                        vs.revoked_ms ? json_pack("{s:o,s:s,s:s,s:I}", "at",
                                                  iso_json(vs.revoked_ms), "by", vs.revoked_by,
                                                  "reason", vs.revoke_reason, "event",
                                                  (json_int_t)vs.revoke_seq)
                                      : json_null());
    json_object_set_new(o, "deleted",
                        vs.deleted_ms ? json_pack("{s:o,s:s,s:I}", "at", iso_json(vs.deleted_ms),
                                                  "by", vs.deleted_by, "event",
                                                  (json_int_t)vs.delete_seq)
                                      : json_null());
    json_object_set_new(o, "build", build ? build : json_null());
    json_object_set_new(o, "properties", props);
    {
        /* Writes of this version's coordinates that lost to an earlier write elsewhere. */
        char prefix[KEY_MAX];
        size_t plen = key_make(prefix, true, repo, name, version, NULL);
        struct conflicts_ctx cc = {db, repo, name, version, json_array()};
        walk(db, CF_CONFLICTS, prefix, plen, 'x', NULL, 1000, SIZE_MAX, add_conflict, &cc, NULL,
             NULL);
        json_object_set_new(o, "conflicts", cc.items);
    }
    for (int i = 0; i < TL_COUNT; i++) {
        if (i != TL_UPLOADS || with_uploads)
            json_object_set(o, trace_list_names[i], t.lists[i]);
        json_decref(t.lists[i]);
    }
    json_object_set_new(o, "events", t.events);
    json_object_set_new(o, "events_truncated", json_boolean(next[0] != '\0'));
    *out = o;
    return 0;
}

int repo_trace_version(repo_db *db, const char *repo, const char *name, const char *version,
                       json_t **out)
{
    return version_trace(db, repo, name, version, true, out);
}

struct coords_ctx {
    repo_db *db;
    json_t *coords;
    json_t *versions; /* "repo\0name\0version" seen → the version's trace, shared */
};

static int add_coord(void *vctx, const char *s, size_t sl, const char *v, size_t vl)
{
    struct coords_ctx *ctx = vctx;
    char buf[KEY_MAX + 8];
    const char *p[4];
    if (split_key(s, sl, buf, sizeof(buf), p, 4) != 4)
        return 0;
    json_t *c = json_pack("{s:s,s:s,s:s,s:s}", "repo", p[0], "name", p[1], "version", p[2],
                          "path", p[3]);
    if (vl == 8) {
        json_t *ev = event_load(ctx->db, get_be64((const uint8_t *)v));
        if (ev) {
            json_object_set_new(c, "uploaded",
                                json_pack("{s:O,s:o,s:o}", "by", json_object_get(ev, "actor"),
                                          "at", event_time(ev), "event", event_ref(ev)));
            json_decref(ev);
        }
    }
    char vk[KEY_MAX];
    snprintf(vk, sizeof(vk), "%s/%s/%s", p[0], p[1], p[2]);
    json_t *vt = json_object_get(ctx->versions, vk);
    if (!vt && version_trace(ctx->db, p[0], p[1], p[2], false, &vt) == 0)
        json_object_set_new(ctx->versions, vk, vt);
    if (vt)
        json_object_set(c, "trace", vt);
    json_array_append_new(ctx->coords, c);
    return 1;
}

int repo_trace_sha256(repo_db *db, const uint8_t sha256[32], json_t **out)
{
    struct blob_digests dig;
    int rc = repo_get_blob(db, sha256, &dig, NULL);
    if (rc != 0)
        return rc;
    struct coords_ctx ctx = {db, json_array(), json_object()};
    char next[REPO_CURSOR_MAX];
    rc = walk(db, CF_BLOBREFS, (const char *)sha256, 32, 'c', NULL, TRACE_COORDS_MAX, SIZE_MAX,
              add_coord, &ctx, next, NULL);
    json_decref(ctx.versions);
    if (rc != 0) {
        json_decref(ctx.coords);
        return rc;
    }
    char h256[65], h1[41], h5[33];
    hex_encode(dig.sha256, 32, h256);
    hex_encode(dig.sha1, 20, h1);
    hex_encode(dig.md5, 16, h5);
    *out = json_pack("{s:s,s:s,s:s,s:I,s:o,s:b}", "sha256", h256, "sha1", h1, "md5", h5, "size",
                     (json_int_t)dig.size, "coordinates", ctx.coords, "coordinates_truncated",
                     next[0] != '\0');
    return *out ? 0 : -ENOMEM;
}
