/*
 * Promotion, revocation, deletion, properties, build records, deployments:
 * their stage functions (run by apply under its lock) and the operations that
 * build their events.  See lifecycle.h for the rules.
 *
 * An event's details name the version (repo, name, version) and carry
 * everything needed to apply it again elsewhere (replication): the new stage
 * and the gate values checked, the property values, the whole build record,
 * the deployment.
 */
#include "event_int.h"
#include "lifecycle.h"

#include "arca_err.h"
#include "hlc.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- small helpers ---------------------------------------------------- */

void op_result_clear(struct op_result *r)
{
    json_decref(r->detail);
    memset(r, 0, sizeof(*r));
}

static int refuse(struct op_result *res, int rc, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int refuse(struct op_result *res, int rc, const char *code, const char *fmt, ...)
{
    if (res) {
        va_list ap;
        snprintf(res->code, sizeof(res->code), "%s", code);
        va_start(ap, fmt);
        vsnprintf(res->message, sizeof(res->message), fmt, ap);
        va_end(ap);
    }
    return rc;
}

static size_t vkey(char *buf, const char *repo, const char *name, const char *version)
{
    return key_make(buf, false, repo, name, version, NULL);
}

const char *repo_stage_of(repo_db *db, const struct version_state *vs)
{
    return vs->stage[0] ? vs->stage : db->policy.stages[0].name;
}

int repo_stage_rank(repo_db *db, const struct version_state *vs)
{
    return vs->stage[0] ? stages_rank(&db->policy, vs->stage) : 0;
}

int put_version_state(repo_db *db, rocksdb_writebatch_t *b, const char *repo, const char *name,
                      const char *version, const struct version_state *vs)
{
    char key[KEY_MAX], tkey[KEY_MAX];
    size_t len = 0, klen = vkey(key, repo, name, version);
    size_t tlen = vtime_key(tkey, repo, name, vs->created_ms, version);
    char *rec = rec_vstate_encode(vs, &len);
    if (!rec)
        return -ENOMEM;
    rocksdb_writebatch_put_cf(b, db->cf[CF_VERSIONS], key, klen, rec, len);
    /* A tombstone leaves the newest-first listing; its record stays under its key. */
    if (vs->deleted_ms)
        rocksdb_writebatch_delete_cf(b, db->cf[CF_VTIME], tkey, tlen);
    else
        rocksdb_writebatch_put_cf(b, db->cf[CF_VTIME], tkey, tlen, rec, len);
    free(rec);
    return 0;
}

void index_version_event(repo_db *db, rocksdb_writebatch_t *b, const char *repo,
                         const char *name, const char *version, uint64_t seq,
                         enum event_action action)
{
    char key[KEY_MAX + 9];
    size_t klen = key_make(key, true, repo, name, version, NULL);
    put_be64((uint8_t *)key + klen, seq);
    const char *a = event_action_names[action];
    rocksdb_writebatch_put_cf(b, db->cf[CF_VEVENTS], key, klen + 8, a, strlen(a));
}

static size_t stageidx_key(char *buf, const char *stage, const char *repo, const char *name,
                           const char *version)
{
    size_t n = strlen(stage);
    memcpy(buf, stage, n);
    buf[n++] = '\0';
    return n + vkey(buf + n, repo, name, version);
}

/* prop key: version key \0 property key; propidx key: key \0 value \0 version key. */
static size_t prop_key(char *buf, const char *repo, const char *name, const char *version,
                       const char *k)
{
    size_t n = key_make(buf, true, repo, name, version, NULL), kl = strlen(k);
    memcpy(buf + n, k, kl);
    return n + kl;
}

static size_t propidx_key(char *buf, const char *k, const char *v, const char *repo,
                          const char *name, const char *version)
{
    size_t kl = strlen(k), vl = strlen(v);
    memcpy(buf, k, kl);
    buf[kl] = '\0';
    memcpy(buf + kl + 1, v, vl);
    buf[kl + 1 + vl] = '\0';
    size_t n = kl + vl + 2;
    return n + vkey(buf + n, repo, name, version);
}

int prop_key_check(const char *k, const char **why)
{
    if (!stages_name_ok(k, PROP_KEY_MAX)) {
        *why = "property keys are 1-128 characters of A-Z a-z 0-9 . _ -, starting with a letter "
               "or digit";
        return ARCA_E_INVALID;
    }
    return 0;
}

int prop_value_check(const char *v, size_t len, const char **why)
{
    if (len > PROP_VALUE_MAX || strlen(v) != len) {
        *why = "property values are at most 1024 bytes, without NUL";
        return ARCA_E_INVALID;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)v[i];
        if (ch < 0x20 || ch == 0x7f) {
            *why = "property values must not contain control characters";
            return ARCA_E_INVALID;
        }
    }
    return 0;
}

/* ---- policy ----------------------------------------------------------- */

int repo_set_policy(repo_db *db, const struct stage_policy *p)
{
    int rc = 0;
    pthread_mutex_lock(&db->apply_mu);
    for (size_t i = 0; i < STAGES_MAX; i++)
        for (size_t j = 0; j < GATE_RULES_MAX; j++)
            if (db->gate_re_set[i][j]) {
                regfree(&db->gate_re[i][j]);
                db->gate_re_set[i][j] = false;
            }
    db->policy = *p;
    for (size_t i = 0; i < p->n && rc == 0; i++) {
        for (size_t j = 0; j < p->stages[i].nrules; j++) {
            const struct gate_rule *r = &p->stages[i].rules[j];
            const char *why;
            if (r->kind == GATE_FILE && coord_path_check(r->key, strlen(r->key), &why) != 0) {
                LOG_E("gate.%s: require_file '%s': %s", p->stages[i].name, r->key, why);
                rc = ARCA_E_CONFIG;
                break;
            }
            if (r->kind != GATE_PROPERTY_MATCH)
                continue;
            char anchored[GATE_VALUE_MAX + 8];
            snprintf(anchored, sizeof(anchored), "^(%s)$", r->value);
            if (regcomp(&db->gate_re[i][j], anchored, REG_EXTENDED | REG_NOSUB) != 0) {
                LOG_E("gate.%s: bad pattern '%s'", p->stages[i].name, r->value);
                rc = ARCA_E_CONFIG;
                break;
            }
            db->gate_re_set[i][j] = true;
        }
    }
    pthread_mutex_unlock(&db->apply_mu);
    return rc;
}

const struct stage_policy *repo_policy(repo_db *db)
{
    return &db->policy;
}

/* ---- gates ------------------------------------------------------------ */

/* The current value of a property (malloc'd) or NULL when unset. */
char *prop_current(repo_db *db, const char *repo, const char *name, const char *version,
                          const char *k)
{
    char key[KEY_MAX + PROP_KEY_MAX], *v = NULL, *out = NULL;
    size_t vlen = 0;
    if (db_get(db, CF_PROPS, key, prop_key(key, repo, name, version, k), &v, &vlen) != 0)
        return NULL;
    json_t *o = json_loadb(v, vlen, 0, NULL);
    const char *s = json_string_value(json_object_get(o, "v"));
    if (s)
        out = strdup(s);
    json_decref(o);
    rocksdb_free(v);
    return out;
}

/*
 * Checks the gates of stage index si for the version; appends one object per
 * rule to checked and to unmet when it fails.
 */
static int check_gates(repo_db *db, size_t si, const char *repo, const char *name,
                       const char *version, const struct version_state *vs, json_t *checked,
                       json_t *unmet)
{
    const struct stage_def *sd = &db->policy.stages[si];
    for (size_t j = 0; j < sd->nrules; j++) {
        const struct gate_rule *r = &sd->rules[j];
        json_t *g = json_pack("{s:s}", "stage", sd->name);
        bool ok = false;
        if (!g)
            return -ENOMEM;
        switch (r->kind) {
        case GATE_PROPERTY_EQ:
        case GATE_PROPERTY_MATCH: {
            char *cur = prop_current(db, repo, name, version, r->key);
            if (r->kind == GATE_PROPERTY_EQ)
                ok = cur && strcmp(cur, r->value) == 0;
            else
                ok = cur && regexec(&db->gate_re[si][j], cur, 0, NULL, 0) == 0;
            json_object_set_new(g, "gate", json_string("property"));
            json_object_set_new(g, "key", json_string(r->key));
            json_object_set_new(g, r->kind == GATE_PROPERTY_EQ ? "expected" : "pattern",
                                json_string(r->value));
            json_object_set_new(g, "actual", cur ? json_string(cur) : json_null());
            json_object_set_new(g, "message",
                                json_string(ok ? "ok"
                                            : !cur ? "the property is not set"
                                            : r->kind == GATE_PROPERTY_EQ
                                                ? "the property has another value"
                                                : "the property does not match the pattern"));
            free(cur);
            break;
        }
        case GATE_FILE: {
            char key[KEY_MAX];
            size_t klen = key_make(key, false, repo, name, version, r->key);
            ok = db_get(db, CF_ARTIFACTS, key, klen, NULL, NULL) == 0;
            json_object_set_new(g, "gate", json_string("file"));
            json_object_set_new(g, "path", json_string(r->key));
            json_object_set_new(g, "message",
                                json_string(ok ? "ok" : "the version has no file at this path"));
            break;
        }
        case GATE_BUILD:
            ok = vs->has_build;
            json_object_set_new(g, "gate", json_string("build"));
            json_object_set_new(g, "message",
                                json_string(ok ? "ok" : "no build record is attached"));
            break;
        }
        json_object_set_new(g, "ok", json_boolean(ok));
        if (!ok)
            json_array_append(unmet, g);
        json_array_append_new(checked, g);
    }
    return 0;
}

/* ---- stage functions -------------------------------------------------- */

static int stage_promote(repo_db *db, const struct event *ev, uint64_t seq, uint64_t hlc,
                         rocksdb_writebatch_t *b, struct staged *st, struct version_state *vs)
{
    const char *repo = ev->u.vop.repo, *name = ev->u.vop.name, *version = ev->u.vop.version;
    struct op_result *res = ev->u.vop.res;
    const char *to = json_string_value(json_object_get(ev->u.vop.args, "to"));
    const char *reason = json_string_value(json_object_get(ev->u.vop.args, "reason"));
    const struct stage_policy *p = &db->policy;
    int rt = to ? stages_rank(p, to) : -1;
    int rc = repo_stage_rank(db, vs);
    char from[STAGE_NAME_MAX], skey[KEY_MAX + STAGE_NAME_MAX];

    if (EV_REMOTE(ev)) {
        /* Another centre checked its gates; here the furthest stage wins. */
        if (rt < 0 || rc < 0)
            return refuse(res, ARCA_E_INVALID, "unknown_stage", "stage '%s' is not configured",
                          to ? to : "");
        snprintf(from, sizeof(from), "%s", repo_stage_of(db, vs));
        if (rt == rc && rc > 0 &&
            hlc_origin_cmp(hlc, event_origin(db, ev), vs->stage_hlc, vs->stage_origin) < 0) {
            /* The same stage reached earlier elsewhere: that entry is the one kept. */
            vs->stage_ms = HLC_MS(hlc);
            vs->stage_seq = seq;
            vs->stage_hlc = hlc;
            snprintf(vs->stage_origin, sizeof(vs->stage_origin), "%s", event_origin(db, ev));
            return 0;
        }
        if (rt <= rc) {
            st->noop = true;
            return 0;
        }
        goto move;
    }
    if (rt < 0) {
        char list[STAGES_MAX * (STAGE_NAME_MAX + 2)] = "";
        for (size_t i = 0; i < p->n; i++) {
            strcat(list, i ? ", " : "");
            strcat(list, p->stages[i].name);
        }
        return refuse(res, ARCA_E_INVALID, "unknown_stage", "'%s' is not a stage (stages: %s)",
                      to ? to : "", list);
    }
    if (vs->revoked_ms)
        return refuse(res, ARCA_E_CONFLICT, "version_revoked",
                      "the version was revoked (%s); it cannot be promoted", vs->revoke_reason);
    if (rc < 0)
        return refuse(res, ARCA_E_CONFLICT, "unknown_stage",
                      "the version is in stage '%s', which the configuration no longer lists",
                      vs->stage);
    snprintf(from, sizeof(from), "%s", repo_stage_of(db, vs));
    if (rt == rc) {
        st->noop = true;
        return 0;
    }
    if (rt < rc)
        return refuse(res, ARCA_E_CONFLICT, "stage_backwards",
                      "the version is already in '%s', past '%s': stages only move forward", from,
                      to);
    if (rt > rc + 1 && !p->allow_skip)
        return refuse(res, ARCA_E_CONFLICT, "stage_skip",
                      "'%s' is %d stages ahead of '%s'; promote to '%s' first (skipping is off)",
                      to, rt - rc, from, p->stages[rc + 1].name);

    json_t *checked = json_array(), *unmet = json_array();
    int r = 0;
    for (int si = rc + 1; si <= rt && r == 0; si++)
        r = check_gates(db, (size_t)si, repo, name, version, vs, checked, unmet);
    if (r != 0 || json_array_size(unmet) > 0) {
        if (r == 0) {
            r = refuse(res, ARCA_E_PRECONDITION, "gates_unmet",
                       "%zu of %zu quality gates for '%s' are unmet", json_array_size(unmet),
                       json_array_size(checked), to);
            res->detail = json_pack("{s:o,s:o}", "unmet", unmet, "checked", checked);
        } else {
            json_decref(unmet);
            json_decref(checked);
        }
        return r;
    }
    json_decref(unmet);
    if (ev->u.vop.dry_run) {
        st->dry = true;
        res->detail = json_pack("{s:s,s:s,s:o}", "from", from, "to", to, "checked", checked);
        return 0;
    }
    json_object_set_new(st->details, "gates", json_incref(checked));
    res->detail = json_pack("{s:o}", "checked", checked);
move:
    rocksdb_writebatch_delete_cf(b, db->cf[CF_STAGEIDX], skey,
                                 stageidx_key(skey, from, repo, name, version));
    snprintf(vs->stage, sizeof(vs->stage), "%s", to);
    vs->stage_ms = HLC_MS(hlc);
    vs->stage_seq = seq;
    vs->stage_hlc = hlc;
    snprintf(vs->stage_origin, sizeof(vs->stage_origin), "%s", event_origin(db, ev));
    rocksdb_writebatch_put_cf(b, db->cf[CF_STAGEIDX], skey,
                              stageidx_key(skey, to, repo, name, version), "", 0);
    json_object_set_new(st->details, "from", json_string(from));
    json_object_set_new(st->details, "to", json_string(to));
    json_object_set_new(st->details, "reason", json_string(reason ? reason : ""));
    return 0;
}

/*
 * Hands every entry under the version's prefix in cf to each_fn (may be
 * NULL), which may stage changes or stop the walk with an error; with del,
 * the entry is deleted after it.
 */
typedef int (*each_fn_t)(void *ctx, const char *key, size_t klen, size_t plen, const char *v,
                         size_t vl);

static int each_under(repo_db *db, rocksdb_writebatch_t *b, enum repo_cf cf, const char *repo,
                      const char *name, const char *version, bool del, each_fn_t each_fn,
                      void *ctx)
{
    char prefix[KEY_MAX];
    size_t plen = key_make(prefix, true, repo, name, version, NULL);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db->db, db->ropts, db->cf[cf]);
    int rc = 0;
    for (rocksdb_iter_seek(it, prefix, plen); rocksdb_iter_valid(it) && rc == 0;
         rocksdb_iter_next(it)) {
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl);
        if (kl < plen || memcmp(k, prefix, plen) != 0)
            break;
        const char *v = rocksdb_iter_value(it, &vl);
        if (each_fn && (rc = each_fn(ctx, k, kl, plen, v, vl)) != 0)
            break;
        if (del)
            rocksdb_writebatch_delete_cf(b, db->cf[cf], k, kl);
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    if (err && rc == 0)
        rc = db_error("iterate", err);
    else
        rocksdb_free(err);
    rocksdb_iter_destroy(it);
    return rc;
}

struct drop_ctx {
    repo_db *db;
    rocksdb_writebatch_t *b;
    const char *repo, *name, *version;
    uint64_t files, bytes;
};

/* A file of a version being revoked: its record carries the flag downloads check. */
static int mark_revoked(void *vctx, const char *k, size_t kl, size_t plen, const char *v,
                        size_t vl)
{
    struct drop_ctx *ctx = vctx;
    struct artifact a;
    size_t len = 0;
    (void)plen;
    int rc = rec_artifact_decode(v, vl, &a);
    if (rc != 0 || a.revoked)
        return rc;
    a.revoked = true;
    return batch_put(ctx->b, ctx->db, CF_ARTIFACTS, k, kl, rec_artifact_encode(&a, &len), &len);
}

/* A file leaving the index: counted for the statistics. */
static int count_file(void *vctx, const char *k, size_t kl, size_t plen, const char *v,
                      size_t vl)
{
    struct drop_ctx *ctx = vctx;
    struct artifact a;
    (void)k;
    (void)kl;
    (void)plen;
    int rc = rec_artifact_decode(v, vl, &a);
    if (rc == 0) {
        ctx->files++;
        ctx->bytes += a.dig.size;
    }
    return rc;
}

/* A property leaving: its index entry goes too (the events keep its history). */
static int drop_prop_index(void *vctx, const char *k, size_t kl, size_t plen, const char *v,
                           size_t vl)
{
    struct drop_ctx *ctx = vctx;
    const char *s = k + plen;
    size_t sl = kl - plen;
    char pk[PROP_KEY_MAX + 1], ikey[KEY_MAX + PROP_KEY_MAX + PROP_VALUE_MAX];
    if (sl > PROP_KEY_MAX)
        return 0;
    memcpy(pk, s, sl);
    pk[sl] = '\0';
    json_t *o = json_loadb(v, vl, 0, NULL);
    const char *cur = json_string_value(json_object_get(o, "v"));
    if (cur)
        rocksdb_writebatch_delete_cf(ctx->b, ctx->db->cf[CF_PROPIDX], ikey,
                                     propidx_key(ikey, pk, cur, ctx->repo, ctx->name,
                                                 ctx->version));
    json_decref(o);
    return 0;
}

static int stage_revoke(repo_db *db, const struct event *ev, uint64_t seq, uint64_t hlc,
                        rocksdb_writebatch_t *b, struct staged *st, struct version_state *vs)
{
    const char *reason = json_string_value(json_object_get(ev->u.vop.args, "reason"));
    const char *origin = event_origin(db, ev);
    /* Revocation is final; of several, the earliest (HLC, origin) is the one shown everywhere. */
    if (vs->revoked_ms &&
        (!EV_REMOTE(ev) || hlc_origin_cmp(hlc, origin, vs->revoke_hlc, vs->revoke_origin) >= 0)) {
        st->noop = true;
        return 0;
    }
    if (!vs->revoked_ms) {
        struct drop_ctx dc = {db, b, ev->u.vop.repo, ev->u.vop.name, ev->u.vop.version, 0, 0};
        int rc = each_under(db, b, CF_ARTIFACTS, dc.repo, dc.name, dc.version, false,
                            mark_revoked, &dc);
        if (rc != 0)
            return rc;
    }
    vs->revoke_hlc = hlc;
    snprintf(vs->revoke_origin, sizeof(vs->revoke_origin), "%s", origin);
    vs->revoked_ms = HLC_MS(hlc);
    vs->revoke_seq = seq;
    clean_label(vs->revoked_by, sizeof(vs->revoked_by),
                ev->who && ev->who->actor ? ev->who->actor : "");
    snprintf(vs->revoke_reason, sizeof(vs->revoke_reason), "%s", reason ? reason : "");
    json_object_set_new(st->details, "reason", json_string(vs->revoke_reason));
    json_object_set_new(st->details, "stage", json_string(repo_stage_of(db, vs)));
    return 0;
}

static int stage_delete(repo_db *db, const struct event *ev, uint64_t seq, uint64_t hlc,
                        rocksdb_writebatch_t *b, struct staged *st, struct version_state *vs)
{
    const char *repo = ev->u.vop.repo, *name = ev->u.vop.name, *version = ev->u.vop.version;
    struct op_result *res = ev->u.vop.res;
    const char *reason = json_string_value(json_object_get(ev->u.vop.args, "reason"));
    char skey[KEY_MAX + STAGE_NAME_MAX];
    struct drop_ctx dc = {db, b, repo, name, version, 0, 0};
    int rc;
    /* Locally the rules hold; from another centre the tombstone wins (it was allowed there). */
    if (!EV_REMOTE(ev) && vs->revoked_ms)
        return refuse(res, ARCA_E_CONFLICT, "version_revoked",
                      "the version was revoked; revoked versions are kept for the audit trail");
    if (!EV_REMOTE(ev) && repo_stage_rank(db, vs) != 0)
        return refuse(res, ARCA_E_CONFLICT, "version_promoted",
                      "the version reached stage '%s'; only versions still in '%s' can be "
                      "deleted", repo_stage_of(db, vs), db->policy.stages[0].name);
    if ((rc = each_under(db, b, CF_ARTIFACTS, repo, name, version, true, count_file, &dc)) != 0 ||
        (rc = each_under(db, b, CF_PROPS, repo, name, version, true, drop_prop_index, &dc)) !=
            0 ||
        (rc = each_under(db, b, CF_CONFLICTS, repo, name, version, true, NULL, NULL)) != 0)
        return rc;
    rocksdb_writebatch_delete_cf(b, db->cf[CF_STAGEIDX], skey,
                                 stageidx_key(skey, repo_stage_of(db, vs), repo, name, version));
    {
        char bkey[KEY_MAX];
        rocksdb_writebatch_delete_cf(b, db->cf[CF_BUILDS], bkey,
                                     vkey(bkey, repo, name, version));
    }
    /*
     * A tombstone keeps only what every arrival order agrees on: when it was
     * created and who deleted it.  Stage, revocation, build, properties and
     * counts go, because changes that reach a tombstone later are ignored.
     */
    uint64_t created = vs->created_ms;
    memset(vs, 0, sizeof(*vs));
    vs->created_ms = created;
    vs->delete_hlc = hlc;
    snprintf(vs->delete_origin, sizeof(vs->delete_origin), "%s", event_origin(db, ev));
    vs->deleted_ms = HLC_MS(hlc);
    vs->delete_seq = seq;
    clean_label(vs->deleted_by, sizeof(vs->deleted_by),
                ev->who && ev->who->actor ? ev->who->actor : "");
    /* Counters only add: subtracting is adding the two's complement (mod 2^64). */
    st->delta.artifact_count = (uint64_t)0 - dc.files;
    st->delta.logical_bytes = (uint64_t)0 - dc.bytes;
    json_object_set_new(st->details, "reason", json_string(reason ? reason : ""));
    json_object_set_new(st->details, "files", json_integer((json_int_t)dc.files));
    json_object_set_new(st->details, "bytes", json_integer((json_int_t)dc.bytes));
    return 0;
}

/*
 * Sets properties last-writer-wins by (hlc, origin): a change older than the
 * stored one is skipped.  Adds {"changes": {...}, "previous": {...}} of what
 * did change to details; *changed counts them.
 */
static int apply_props(repo_db *db, const char *repo, const char *name, const char *version,
                       const json_t *changes, uint64_t seq, uint64_t hlc, const char *origin,
                       rocksdb_writebatch_t *b, json_t *details, size_t *changed)
{
    const char *k;
    json_t *v;
    json_t *done = json_object(), *prev = json_object();
    *changed = 0;
    json_object_foreach((json_t *)changes, k, v)
    {
        char key[KEY_MAX + PROP_KEY_MAX], ikey[KEY_MAX + PROP_KEY_MAX + PROP_VALUE_MAX];
        char *raw = NULL;
        size_t rl = 0, klen = prop_key(key, repo, name, version, k);
        json_t *old = NULL;
        if (db_get(db, CF_PROPS, key, klen, &raw, &rl) == 0) {
            old = json_loadb(raw, rl, 0, NULL);
            rocksdb_free(raw);
        }
        uint64_t ohlc = 0;
        const char *oorigin = json_string_value(json_object_get(old, "origin"));
        json_t *oh = json_object_get(old, "hlc");
        if (json_is_integer(oh))
            ohlc = (uint64_t)json_integer_value(oh);
        const char *ov = json_string_value(json_object_get(old, "v"));
        const char *nv = json_string_value(v);
        bool newer = !old || hlc > ohlc ||
                     (hlc == ohlc && strcmp(origin, oorigin ? oorigin : "") > 0);
        bool same = (!ov && !nv) || (ov && nv && strcmp(ov, nv) == 0);
        /* Locally an unchanged value is no change; from elsewhere the newer stamp is kept. */
        if (!newer || (same && strcmp(origin, db->centre) == 0)) {
            json_decref(old);
            continue;
        }
        if (ov && !same)
            rocksdb_writebatch_delete_cf(b, db->cf[CF_PROPIDX], ikey,
                                         propidx_key(ikey, k, ov, repo, name, version));
        if (nv && !same)
            rocksdb_writebatch_put_cf(b, db->cf[CF_PROPIDX], ikey,
                                      propidx_key(ikey, k, nv, repo, name, version), "", 0);
        json_t *rec = json_pack("{s:O,s:I,s:s,s:I}", "v", v, "hlc", (json_int_t)hlc, "origin",
                                origin, "seq", (json_int_t)seq);
        char *text = rec ? json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        json_decref(rec);
        if (!text) {
            json_decref(old);
            json_decref(done);
            json_decref(prev);
            return -ENOMEM;
        }
        rocksdb_writebatch_put_cf(b, db->cf[CF_PROPS], key, klen, text, strlen(text));
        free(text);
        if (!same) {
            json_object_set(done, k, v);
            json_object_set_new(prev, k, ov ? json_string(ov) : json_null());
            (*changed)++;
        }
        json_decref(old);
    }
    json_object_set_new(details, "changes", done);
    json_object_set_new(details, "previous", prev);
    return 0;
}

int lifecycle_put_props(repo_db *db, const struct coord *c, const json_t *props, uint64_t seq,
                        uint64_t hlc, const char *origin, rocksdb_writebatch_t *b,
                        json_t *details)
{
    json_t *sub = json_object();
    size_t n = 0;
    int rc = apply_props(db, c->repo, c->name, c->version, props, seq, hlc, origin, b, sub, &n);
    if (rc == 0)
        json_object_set(details, "properties", json_object_get(sub, "changes"));
    json_decref(sub);
    return rc;
}

/* Why the version (state vs) takes no new file, or 0 when it does. */
static int refuse_new_file(repo_db *db, const struct version_state *vs, const char *version,
                           struct op_result *res)
{
    if (vs->deleted_ms)
        return refuse(res, ARCA_E_CONFLICT, "version_deleted",
                      "version %s was deleted; a deleted version's coordinates are not reused",
                      version);
    if (vs->revoked_ms)
        return refuse(res, ARCA_E_CONFLICT, "version_revoked",
                      "version %s was revoked (%s); it takes no new files", version,
                      vs->revoke_reason);
    if (repo_stage_rank(db, vs) != 0)
        return refuse(res, ARCA_E_CONFLICT, "version_frozen",
                      "version %s is in stage '%s': its files are frozen once it leaves '%s'",
                      version, repo_stage_of(db, vs), db->policy.stages[0].name);
    return 0;
}

int lifecycle_check_put(repo_db *db, const struct event *ev, const struct coord *c,
                        struct version_state *vs, struct op_result *res)
{
    int rc = repo_get_version(db, c->repo, c->name, c->version, vs);
    if (rc == ARCA_E_NOTFOUND) {
        memset(vs, 0, sizeof(*vs));
        return 0;
    }
    if (rc != 0 || EV_REMOTE(ev))
        return rc; /* a remote file lands unless the version is a tombstone (caller) */
    return refuse_new_file(db, vs, c->version, res);
}

int repo_check_new_file(repo_db *db, const struct coord *c, struct op_result *res)
{
    struct version_state vs;
    int rc = repo_get_version(db, c->repo, c->name, c->version, &vs);
    if (rc == ARCA_E_NOTFOUND)
        return 0;
    return rc != 0 ? rc : refuse_new_file(db, &vs, c->version, res);
}

/* Is content sha256 (hex) held by a file of the version (cf blobrefs)? */
static bool version_has_content(repo_db *db, const char *repo, const char *name,
                                const char *version, const char *sha_hex)
{
    uint8_t sha[32];
    if (!sha_hex || strlen(sha_hex) != 64 || hex_decode(sha_hex, 64, sha, 32) != 0)
        return false;
    char prefix[32 + KEY_MAX];
    memcpy(prefix, sha, 32);
    size_t plen = 32 + key_make(prefix + 32, true, repo, name, version, NULL);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db->db, db->ropts, db->cf[CF_BLOBREFS]);
    rocksdb_iter_seek(it, prefix, plen);
    bool found = false;
    if (rocksdb_iter_valid(it)) {
        size_t kl;
        const char *k = rocksdb_iter_key(it, &kl);
        found = kl > plen && memcmp(k, prefix, plen) == 0;
    }
    rocksdb_iter_destroy(it);
    return found;
}

static int stage_build(repo_db *db, const struct event *ev, uint64_t hlc, rocksdb_writebatch_t *b,
                       struct staged *st, struct version_state *vs)
{
    const char *repo = ev->u.vop.repo, *name = ev->u.vop.name, *version = ev->u.vop.version;
    struct op_result *res = ev->u.vop.res;
    json_t *record = json_object_get(ev->u.vop.args, "record");
    char key[KEY_MAX], *old = NULL;
    size_t klen = vkey(key, repo, name, version), olen = 0;
    const char *origin = event_origin(db, ev);
    if (EV_REMOTE(ev)) {
        /* Checked where it was written; here the last writer by (HLC, origin) wins. */
        if (vs->has_build &&
            hlc_origin_cmp(hlc, origin, vs->build_hlc, vs->build_origin) <= 0) {
            st->noop = true;
            return 0;
        }
        goto store;
    }
    /* Past the first stage a missing record may still be attached, never replaced. */
    if (repo_stage_rank(db, vs) != 0 && vs->has_build)
        return refuse(res, ARCA_E_CONFLICT, "version_frozen",
                      "version %s is in stage '%s': its build record is frozen once it leaves "
                      "'%s'", version, repo_stage_of(db, vs), db->policy.stages[0].name);
    if (vs->revoked_ms)
        return refuse(res, ARCA_E_CONFLICT, "version_revoked", "version %s was revoked",
                      version);
    /* Provenance must describe this version: each subject is one of its files. */
    json_t *subjects = json_object_get(record, "subjects");
    size_t i;
    json_t *s;
    json_array_foreach(subjects, i, s)
    {
        const char *sn = json_string_value(json_object_get(s, "name"));
        const char *sh = json_string_value(json_object_get(s, "sha256"));
        struct coord c;
        struct artifact a;
        const char *why;
        if (sn && coord_set(&c, repo, name, version, sn, &why) == 0 &&
            repo_get_artifact(db, &c, &a) == 0) {
            char hex[65];
            hex_encode(a.dig.sha256, 32, hex);
            if (strcmp(hex, sh) == 0)
                continue;
            res->detail = json_pack("{s:s,s:s,s:s}", "subject", sn, "expected", hex, "actual",
                                    sh);
            return refuse(res, ARCA_E_INVALID, "subject_mismatch",
                          "provenance subject '%s' has sha256 %s but the version's file holds %s",
                          sn, sh, hex);
        }
        if (!version_has_content(db, repo, name, version, sh)) {
            res->detail = json_pack("{s:s?,s:s}", "subject", sn, "actual", sh);
            return refuse(res, ARCA_E_INVALID, "subject_mismatch",
                          "provenance subject '%s' (sha256 %s) is not a file of version %s",
                          sn ? sn : "", sh, version);
        }
    }
store:;
    char *text = json_dumps(record, JSON_COMPACT | JSON_SORT_KEYS);
    if (!text)
        return -ENOMEM;
    if (db_get(db, CF_BUILDS, key, klen, &old, &olen) == 0 && olen == strlen(text) &&
        memcmp(old, text, olen) == 0 && !EV_REMOTE(ev)) {
        st->noop = true;
    } else {
        rocksdb_writebatch_put_cf(b, db->cf[CF_BUILDS], key, klen, text, strlen(text));
        vs->has_build = true;
        vs->build_hlc = hlc;
        snprintf(vs->build_origin, sizeof(vs->build_origin), "%s", origin);
        json_object_set(st->details, "record", record);
        json_object_set_new(st->details, "replaced", json_boolean(old != NULL));
    }
    rocksdb_free(old);
    free(text);
    return 0;
}

static int stage_deploy(repo_db *db, const struct event *ev, uint64_t seq, uint64_t hlc,
                        rocksdb_writebatch_t *b, struct staged *st, struct version_state *vs)
{
    const char *env = json_string_value(json_object_get(ev->u.vop.args, "environment"));
    const char *target = json_string_value(json_object_get(ev->u.vop.args, "target"));
    char key[ENV_MAX + 10];
    size_t el = strlen(env);
    memcpy(key, env, el);
    key[el] = '\0';
    put_be64((uint8_t *)key + el + 1, ~seq);
    json_t *rec = json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:o,s:s,s:b}", "environment", env,
                            "target", target, "repo", ev->u.vop.repo, "name", ev->u.vop.name,
                            "version", ev->u.vop.version, "seq", (json_int_t)seq, "time_ms",
                            (json_int_t)HLC_MS(hlc), "actor",
                            label_json(ev->who && ev->who->actor ? ev->who->actor : ""),
                            "stage", repo_stage_of(db, vs), "revoked", vs->revoked_ms != 0);
    char *text = rec ? json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(rec);
    if (!text)
        return -ENOMEM;
    rocksdb_writebatch_put_cf(b, db->cf[CF_DEPLOYS], key, el + 9, text, strlen(text));
    free(text);
    json_object_set_new(st->details, "environment", json_string(env));
    json_object_set_new(st->details, "target", json_string(target));
    json_object_set_new(st->details, "stage", json_string(repo_stage_of(db, vs)));
    json_object_set_new(st->details, "revoked", json_boolean(vs->revoked_ms != 0));
    return 0;
}

int stage_version_op(repo_db *db, const struct event *ev, uint64_t seq, uint64_t hlc,
                     rocksdb_writebatch_t *b, struct staged *st)
{
    const char *repo = ev->u.vop.repo, *name = ev->u.vop.name, *version = ev->u.vop.version;
    struct op_result *res = ev->u.vop.res;
    struct version_state vs;
    int rc = repo_get_version(db, repo, name, version, &vs);
    if (rc == ARCA_E_NOTFOUND)
        return refuse(res, rc, "not_found", "no version %s/%s/%s", repo, name, version);
    if (rc != 0)
        return rc;
    if (vs.deleted_ms && ev->action != EV_VERSION_DELETE)
        return refuse(res, ARCA_E_CONFLICT, "version_deleted", "version %s was deleted",
                      version);
    if (vs.deleted_ms) {
        /* Deleted twice (e.g. in two centres): the earliest deletion is the one kept. */
        const char *origin = event_origin(db, ev);
        if (EV_REMOTE(ev) && hlc_origin_cmp(hlc, origin, vs.delete_hlc, vs.delete_origin) < 0) {
            vs.delete_hlc = hlc;
            vs.deleted_ms = HLC_MS(hlc);
            vs.delete_seq = seq;
            snprintf(vs.delete_origin, sizeof(vs.delete_origin), "%s", origin);
            clean_label(vs.deleted_by, sizeof(vs.deleted_by),
                        ev->who && ev->who->actor ? ev->who->actor : "");
            rc = put_version_state(db, b, repo, name, version, &vs);
        }
        st->noop = true;
        res->state = vs;
        return rc;
    }
    snprintf(st->subject, sizeof(st->subject), "%s/%s/%s", repo, name, version);
    st->details = json_pack("{s:s,s:s,s:s}", "repo", repo, "name", name, "version", version);
    if (!st->details)
        return -ENOMEM;
    size_t nchanged = 0;
    switch (ev->action) {
    case EV_VERSION_PROMOTE:
        rc = stage_promote(db, ev, seq, hlc, b, st, &vs);
        break;
    case EV_VERSION_REVOKE:
        rc = stage_revoke(db, ev, seq, hlc, b, st, &vs);
        break;
    case EV_VERSION_DELETE:
        rc = stage_delete(db, ev, seq, hlc, b, st, &vs);
        break;
    case EV_PROPERTY_SET:
        rc = apply_props(db, repo, name, version, json_object_get(ev->u.vop.args, "changes"),
                         seq, hlc, ev->origin ? ev->origin : db->centre, b, st->details,
                         &nchanged);
        if (rc == 0 && nchanged == 0)
            st->noop = true;
        break;
    case EV_BUILD_PUT:
        rc = stage_build(db, ev, hlc, b, st, &vs);
        break;
    case EV_DEPLOYMENT_RECORD:
        rc = stage_deploy(db, ev, seq, hlc, b, st, &vs);
        break;
    default:
        rc = ARCA_E_INVALID;
        break;
    }
    if (rc == 0 && !st->noop && !st->dry) {
        rc = put_version_state(db, b, repo, name, version, &vs);
        index_version_event(db, b, repo, name, version, seq, ev->action);
        res->changed = true;
        res->seq = seq;
    }
    res->state = vs;
    return rc;
}

/* ---- operations ------------------------------------------------------- */

static int version_args_ok(const char *repo, const char *name, const char *version,
                           struct op_result *res)
{
    const char *why;
    struct coord c;
    if (coord_set(&c, repo, name, version, NULL, &why) != 0)
        return refuse(res, ARCA_E_INVALID, "invalid_path", "invalid coordinate: %s", why);
    return 0;
}

static int run_vop(repo_db *db, enum event_action action, const char *repo, const char *name,
                   const char *version, json_t *args, bool dry_run,
                   const struct actor_ctx *who, struct op_result *res)
{
    bool applied = false;
    memset(res, 0, sizeof(*res));
    int rc = version_args_ok(repo, name, version, res);
    if (rc == 0) {
        struct event ev = {.action = action, .who = who};
        ev.u.vop.repo = repo;
        ev.u.vop.name = name;
        ev.u.vop.version = version;
        ev.u.vop.args = args;
        ev.u.vop.dry_run = dry_run;
        ev.u.vop.res = res;
        rc = apply(db, &ev, &applied);
        if (rc == 0 && !applied)
            res->changed = false;
    }
    json_decref(args);
    return rc;
}

static int reason_ok(const char *reason, bool required, struct op_result *res)
{
    if (!reason || !*reason) {
        if (required)
            return refuse(res, ARCA_E_INVALID, "bad_request", "a reason is required");
        return 0;
    }
    const char *why;
    if (strlen(reason) > REASON_MAX || prop_value_check(reason, strlen(reason), &why) != 0)
        return refuse(res, ARCA_E_INVALID, "bad_request",
                      "reason must be at most %d bytes without control characters", REASON_MAX);
    return 0;
}

int repo_promote(repo_db *db, const char *repo, const char *name, const char *version,
                 const char *to, const char *reason, bool dry_run, const struct actor_ctx *who,
                 struct op_result *res)
{
    memset(res, 0, sizeof(*res));
    if (reason_ok(reason, false, res) != 0)
        return ARCA_E_INVALID;
    return run_vop(db, EV_VERSION_PROMOTE, repo, name, version,
                   json_pack("{s:s,s:s}", "to", to ? to : "", "reason", reason ? reason : ""),
                   dry_run, who, res);
}

int repo_revoke(repo_db *db, const char *repo, const char *name, const char *version,
                const char *reason, const struct actor_ctx *who, struct op_result *res)
{
    memset(res, 0, sizeof(*res));
    if (reason_ok(reason, true, res) != 0)
        return ARCA_E_INVALID;
    return run_vop(db, EV_VERSION_REVOKE, repo, name, version,
                   json_pack("{s:s}", "reason", reason), false, who, res);
}

int repo_delete_version(repo_db *db, const char *repo, const char *name, const char *version,
                        const char *reason, const struct actor_ctx *who, struct op_result *res)
{
    memset(res, 0, sizeof(*res));
    if (reason_ok(reason, false, res) != 0)
        return ARCA_E_INVALID;
    return run_vop(db, EV_VERSION_DELETE, repo, name, version,
                   json_pack("{s:s}", "reason", reason ? reason : ""), false, who, res);
}

int repo_set_properties(repo_db *db, const char *repo, const char *name, const char *version,
                        const json_t *changes, const struct actor_ctx *who,
                        struct op_result *res)
{
    const char *k, *why;
    json_t *v;
    memset(res, 0, sizeof(*res));
    if (!json_is_object(changes) || json_object_size(changes) == 0 ||
        json_object_size(changes) > PROPS_PER_REQUEST)
        return refuse(res, ARCA_E_INVALID, "bad_request",
                      "the body must be a JSON object of 1-%d \"key\": \"value\" | null pairs",
                      PROPS_PER_REQUEST);
    json_object_foreach((json_t *)changes, k, v)
    {
        if (prop_key_check(k, &why) != 0)
            return refuse(res, ARCA_E_INVALID, "bad_property", "property '%.64s': %s", k, why);
        if (!json_is_null(v) &&
            (!json_is_string(v) ||
             prop_value_check(json_string_value(v), json_string_length(v), &why) != 0))
            return refuse(res, ARCA_E_INVALID, "bad_property", "property '%s': %s", k,
                          json_is_string(v) ? why : "values are strings, or null to remove");
    }
    return run_vop(db, EV_PROPERTY_SET, repo, name, version,
                   json_pack("{s:O}", "changes", changes), false, who, res);
}

/* ---- build records ---------------------------------------------------- */

static bool str_field_ok(json_t *o, const char *k, size_t max, bool required, const char **bad)
{
    json_t *v = json_object_get(o, k);
    if (!v) {
        if (required)
            *bad = k;
        return !required;
    }
    const char *why;
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > max ||
        prop_value_check(json_string_value(v), json_string_length(v), &why) != 0) {
        *bad = k;
        return false;
    }
    return true;
}

static bool is_hex(const char *s, size_t min, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    return n >= min && n <= max && strspn(s, "0123456789abcdef") == n;
}

/* Native record: {pipeline, run_id, vcs_url, commit, branch, builder, started, finished, inputs}. */
static int normalize_native(const json_t *in, json_t **out, struct op_result *res)
{
    static const char *const fields[] = {"pipeline", "run_id",  "vcs_url", "commit",  "branch",
                                         "builder",  "started", "finished", "inputs", "extra"};
    const char *k, *bad = NULL;
    json_t *v;
    json_object_foreach((json_t *)in, k, v)
    {
        bool known = false;
        for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
            known = known || strcmp(k, fields[i]) == 0;
        if (!known)
            return refuse(res, ARCA_E_INVALID, "bad_build_record",
                          "unknown field '%.64s' (pipeline, run_id, vcs_url, commit, branch, "
                          "builder, started, finished, inputs, extra; or an in-toto Statement)",
                          k);
    }
    if (!str_field_ok((json_t *)in, "pipeline", 256, true, &bad) ||
        !str_field_ok((json_t *)in, "run_id", 256, true, &bad) ||
        !str_field_ok((json_t *)in, "vcs_url", 1024, false, &bad) ||
        !str_field_ok((json_t *)in, "branch", 256, false, &bad) ||
        !str_field_ok((json_t *)in, "builder", 256, false, &bad) ||
        !str_field_ok((json_t *)in, "started", 64, false, &bad) ||
        !str_field_ok((json_t *)in, "finished", 64, false, &bad))
        return refuse(res, ARCA_E_INVALID, "bad_build_record",
                      "'%s' must be a non-empty string without control characters%s", bad,
                      strcmp(bad, "pipeline") == 0 || strcmp(bad, "run_id") == 0
                          ? " (required)" : "");
    const char *commit = json_string_value(json_object_get(in, "commit"));
    if (!is_hex(commit, 7, 64))
        return refuse(res, ARCA_E_INVALID, "bad_build_record",
                      "'commit' is required: 7-64 lowercase hex digits");
    json_t *extra = json_object_get(in, "extra");
    if (extra && !json_is_object(extra))
        return refuse(res, ARCA_E_INVALID, "bad_build_record", "'extra' must be an object");
    json_t *inputs = json_object_get(in, "inputs"), *norm_inputs = json_array();
    if (inputs && !json_is_array(inputs)) {
        json_decref(norm_inputs);
        return refuse(res, ARCA_E_INVALID, "bad_build_record", "'inputs' must be a list");
    }
    size_t i;
    json_array_foreach(inputs, i, v)
    {
        const char *sha = json_string_value(json_object_get(v, "sha256"));
        const char *nm = json_string_value(json_object_get(v, "name"));
        const char *uri = json_string_value(json_object_get(v, "uri"));
        if (!json_is_object(v) || !is_hex(sha, 64, 64)) {
            json_decref(norm_inputs);
            return refuse(res, ARCA_E_INVALID, "bad_build_record",
                          "inputs[%zu] needs a 'sha256' of 64 lowercase hex digits", i);
        }
        json_array_append_new(norm_inputs,
                              json_pack("{s:s,s:s?,s:s?}", "sha256", sha, "name", nm, "uri", uri));
    }
    *out = json_deep_copy(in);
    json_object_set_new(*out, "inputs", norm_inputs);
    json_object_set_new(*out, "format", json_string("arca-build-v1"));
    return 0;
}

/* in-toto Statement v1 with an SLSA provenance v1 predicate. */
static int normalize_intoto(const json_t *in, json_t **out, struct op_result *res)
{
    const char *type = json_string_value(json_object_get(in, "_type"));
    const char *ptype = json_string_value(json_object_get(in, "predicateType"));
    json_t *subject = json_object_get(in, "subject");
    json_t *pred = json_object_get(in, "predicate");
    if (!type || strcmp(type, "https://in-toto.io/Statement/v1") != 0)
        return refuse(res, ARCA_E_INVALID, "bad_build_record",
                      "_type must be https://in-toto.io/Statement/v1");
    if (!ptype || strcmp(ptype, "https://slsa.dev/provenance/v1") != 0)
        return refuse(res, ARCA_E_INVALID, "bad_build_record",
                      "predicateType must be https://slsa.dev/provenance/v1");
    if (!json_is_array(subject) || json_array_size(subject) == 0 || !json_is_object(pred))
        return refuse(res, ARCA_E_INVALID, "bad_build_record",
                      "a Statement needs a non-empty 'subject' list and a 'predicate' object");
    json_t *subjects = json_array(), *inputs = json_array();
    size_t i;
    json_t *s;
    json_array_foreach(subject, i, s)
    {
        const char *sn = json_string_value(json_object_get(s, "name"));
        const char *sh = json_string_value(json_object_get(json_object_get(s, "digest"), "sha256"));
        if (!is_hex(sh, 64, 64)) {
            json_decref(subjects);
            json_decref(inputs);
            return refuse(res, ARCA_E_INVALID, "bad_build_record",
                          "subject[%zu] needs digest.sha256 (64 lowercase hex digits)", i);
        }
        json_array_append_new(subjects, json_pack("{s:s?,s:s}", "name", sn, "sha256", sh));
    }
    json_t *bd = json_object_get(pred, "buildDefinition");
    json_t *rd = json_object_get(pred, "runDetails");
    json_t *deps = json_object_get(bd, "resolvedDependencies");
    const char *vcs = NULL, *commit = NULL;
    json_array_foreach(deps, i, s)
    {
        json_t *dg = json_object_get(s, "digest");
        const char *uri = json_string_value(json_object_get(s, "uri"));
        const char *sh = json_string_value(json_object_get(dg, "sha256"));
        const char *gc = json_string_value(json_object_get(dg, "gitCommit"));
        if (gc && !commit) {
            commit = gc;
            vcs = uri;
        }
        if (sh)
            json_array_append_new(inputs, json_pack("{s:s,s:s?}", "sha256", sh, "uri", uri));
    }
    json_t *meta = json_object_get(rd, "metadata");
    *out = json_pack("{s:s,s:s?,s:s?,s:s?,s:s?,s:s?,s:s?,s:s?,s:o,s:o,s:O}", "format",
                     "slsa-provenance-v1", "builder",
                     json_string_value(json_object_get(json_object_get(rd, "builder"), "id")),
                     "build_type", json_string_value(json_object_get(bd, "buildType")), "run_id",
                     json_string_value(json_object_get(meta, "invocationId")), "started",
                     json_string_value(json_object_get(meta, "startedOn")), "finished",
                     json_string_value(json_object_get(meta, "finishedOn")), "vcs_url", vcs,
                     "commit", commit, "subjects", subjects, "inputs", inputs, "statement", in);
    return *out ? 0 : -ENOMEM;
}

int repo_put_build(repo_db *db, const char *repo, const char *name, const char *version,
                   const json_t *record, const struct actor_ctx *who, struct op_result *res)
{
    json_t *norm = NULL;
    memset(res, 0, sizeof(*res));
    if (!json_is_object(record))
        return refuse(res, ARCA_E_INVALID, "bad_build_record", "the build record must be a "
                      "JSON object");
    int rc = json_object_get(record, "_type") ? normalize_intoto(record, &norm, res)
                                              : normalize_native(record, &norm, res);
    if (rc != 0)
        return rc;
    rc = run_vop(db, EV_BUILD_PUT, repo, name, version, json_pack("{s:O}", "record", norm),
                 false, who, res);
    if (rc == 0 && !res->detail)
        res->detail = json_incref(norm);
    json_decref(norm);
    return rc;
}

int repo_record_deployment(repo_db *db, const char *environment, const char *target,
                           const char *repo, const char *name, const char *version,
                           const struct actor_ctx *who, struct op_result *res)
{
    const char *why;
    memset(res, 0, sizeof(*res));
    if (!environment || !stages_name_ok(environment, ENV_MAX))
        return refuse(res, ARCA_E_INVALID, "bad_request", "environment must be 1-%d characters "
                      "of A-Z a-z 0-9 . _ -", ENV_MAX);
    if (!target || !*target || strlen(target) > TARGET_MAX ||
        prop_value_check(target, strlen(target), &why) != 0)
        return refuse(res, ARCA_E_INVALID, "bad_request", "target must be 1-%d bytes without "
                      "control characters", TARGET_MAX);
    return run_vop(db, EV_DEPLOYMENT_RECORD, repo, name, version,
                   json_pack("{s:s,s:s}", "environment", environment, "target", target), false,
                   who, res);
}
