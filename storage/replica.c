/*
 * Other centres' events into this index (see replica.h), and the state
 * digests centres compare, whole and by key range.
 */
#include "replica.h"

#include "arca_err.h"
#include "event_int.h"
#include "lifecycle.h"
#include "log.h"
#include "token.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

static const char *str(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static bool u64(json_t *o, const char *k, uint64_t *out)
{
    json_t *v = json_object_get(o, k);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

static bool hex_field(json_t *o, const char *k, uint8_t *out, size_t n)
{
    const char *s = str(o, k);
    return s && strlen(s) == 2 * n && hex_decode(s, 2 * n, out, n) == 0;
}

static enum event_action action_of(const char *name)
{
    for (int i = 0; i < EV_COUNT; i++)
        if (name && strcmp(event_action_names[i], name) == 0)
            return (enum event_action)i;
    return EV_COUNT;
}

int repo_origin_applied(repo_db *db, const char *origin, uint64_t *seq)
{
    return origin_last(db, origin, seq);
}

/* CF_META key of a peer's cursor: "peer/" + name. */
static size_t peer_key(const char *peer, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "peer/%s", peer);
    return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

int repo_peer_cursor_get(repo_db *db, const char *peer, uint64_t *seq, uint8_t hash[32])
{
    char key[128], *v = NULL;
    size_t klen = peer_key(peer, key, sizeof(key)), vlen = 0;
    *seq = 0;
    memset(hash, 0, 32);
    if (klen == 0)
        return ARCA_E_INVALID;
    int rc = db_get(db, CF_META, key, klen, &v, &vlen);
    if (rc == ARCA_E_NOTFOUND)
        return 0;
    if (rc == 0 && (vlen == 8 || vlen == 40)) {
        *seq = get_be64((const uint8_t *)v);
        if (vlen == 40)
            memcpy(hash, v + 8, 32);
    } else if (rc == 0) {
        rc = ARCA_E_DB;
    }
    rocksdb_free(v);
    return rc;
}

int repo_peer_cursor_set(repo_db *db, const char *peer, uint64_t seq, const uint8_t hash[32])
{
    char key[128], *err = NULL;
    uint8_t be[40];
    size_t klen = peer_key(peer, key, sizeof(key));
    if (klen == 0)
        return ARCA_E_INVALID;
    if (db->readonly)
        return ARCA_E_DB;
    put_be64(be, seq);
    memcpy(be + 8, hash, 32);
    rocksdb_put_cf(db->db, db->wopts, db->cf[CF_META], key, klen, (const char *)be, 40, &err);
    return err ? db_error("peer cursor", err) : 0;
}

int repo_apply_remote(repo_db *db, const char *event_json, size_t len,
                      const struct blob_blocks *blocks, bool *applied)
{
    json_t *e = json_loadb(event_json, len, 0, NULL);
    json_t *d = json_object_get(e, "details");
    struct event ev;
    struct actor_ctx who = {0};
    struct op_result res = {0};
    struct coord c;
    struct artifact art;
    struct blob_digests dig;
    struct token t;
    uint8_t secret_hash[32];
    json_t *args = NULL;
    const char *why;
    int rc = ARCA_E_INVALID;

    *applied = false;
    memset(&ev, 0, sizeof(ev));
    ev.origin = str(e, "origin");
    ev.action = action_of(str(e, "action"));
    ev.remote_subject = str(e, "subject");
    ev.remote_details = d;
    if (!json_is_object(e) || !json_is_object(d) || !ev.origin || !*ev.origin ||
        strlen(ev.origin) > CENTRE_MAX || ev.action == EV_COUNT || !ev.remote_subject ||
        !u64(e, "origin_seq", &ev.origin_seq) || ev.origin_seq == 0 || !u64(e, "hlc", &ev.hlc) ||
        ev.hlc == 0) {
        LOG_W("replication: malformed event");
        goto out;
    }
    if (strcmp(ev.origin, db->centre) == 0) {
        rc = 0; /* our own event, relayed back */
        goto out;
    }
    who.actor = str(e, "actor");
    who.remote_addr = str(e, "remote_addr");
    who.request_id = str(e, "request_id");
    ev.who = &who;

    switch (ev.action) {
    case EV_ARTIFACT_PUT:
        memset(&dig, 0, sizeof(dig));
        if (coord_set(&c, str(d, "repo") ? str(d, "repo") : "", str(d, "name") ? str(d, "name") : "",
                      str(d, "version") ? str(d, "version") : "",
                      str(d, "path") ? str(d, "path") : "", &why) != 0 ||
            !hex_field(d, "sha256", dig.sha256, 32) || !hex_field(d, "sha1", dig.sha1, 20) ||
            !hex_field(d, "md5", dig.md5, 16) || !u64(d, "size", &dig.size))
            goto bad;
        ev.u.put.c = &c;
        ev.u.put.dig = &dig;
        ev.u.put.blocks = blocks;
        ev.u.put.props = json_object_get(d, "properties");
        ev.u.put.out = &art;
        ev.u.put.res = &res;
        break;
    case EV_TOKEN_CREATE: {
        const char *sub = ev.remote_subject;
        json_t *scopes = json_object_get(d, "scopes");
        memset(&t, 0, sizeof(t));
        if (strncmp(sub, "token/", 6) != 0 || strlen(sub + 6) != TOKEN_ID_LEN ||
            !str(d, "name") || !str(d, "owner") || !json_is_array(scopes) ||
            json_array_size(scopes) > TOKEN_SCOPES_MAX ||
            !hex_field(d, "secret_sha256", secret_hash, 32) || !u64(d, "expires_ms", &t.expires_ms))
            goto bad;
        snprintf(t.id, sizeof(t.id), "%s", sub + 6);
        snprintf(t.name, sizeof(t.name), "%s", str(d, "name"));
        snprintf(t.owner, sizeof(t.owner), "%s", str(d, "owner"));
        for (size_t i = 0; i < json_array_size(scopes); i++) {
            const char *sc = json_string_value(json_array_get(scopes, i));
            if (!sc || strlen(sc) > TOKEN_SCOPE_MAX)
                goto bad;
            snprintf(t.scopes[t.nscopes++], TOKEN_SCOPE_MAX + 1, "%s", sc);
        }
        ev.u.tcreate.t = &t;
        ev.u.tcreate.hash = secret_hash;
        break;
    }
    case EV_TOKEN_REVOKE:
        if (strncmp(ev.remote_subject, "token/", 6) != 0 ||
            strlen(ev.remote_subject + 6) != TOKEN_ID_LEN)
            goto bad;
        ev.u.trevoke.id = ev.remote_subject + 6;
        break;
    case EV_AUTH_FAILURE:
        ev.u.afail.reason = str(d, "reason") ? str(d, "reason") : "";
        ev.u.afail.token_id = str(d, "token_id");
        break;
    default: {
        /* Version-level actions: the details carry their arguments. */
        if (coord_set(&c, str(d, "repo") ? str(d, "repo") : "",
                      str(d, "name") ? str(d, "name") : "",
                      str(d, "version") ? str(d, "version") : "", NULL, &why) != 0)
            goto bad;
        switch (ev.action) {
        case EV_VERSION_PROMOTE:
            args = json_pack("{s:s,s:s}", "to", str(d, "to") ? str(d, "to") : "", "reason",
                             str(d, "reason") ? str(d, "reason") : "");
            break;
        case EV_VERSION_REVOKE:
        case EV_VERSION_DELETE:
            args = json_pack("{s:s}", "reason", str(d, "reason") ? str(d, "reason") : "");
            break;
        case EV_PROPERTY_SET:
            if (!json_is_object(json_object_get(d, "changes")))
                goto bad;
            args = json_pack("{s:O}", "changes", json_object_get(d, "changes"));
            break;
        case EV_BUILD_PUT:
            if (!json_is_object(json_object_get(d, "record")))
                goto bad;
            args = json_pack("{s:O}", "record", json_object_get(d, "record"));
            break;
        case EV_DEPLOYMENT_RECORD:
            if (!str(d, "environment") || !str(d, "target"))
                goto bad;
            args = json_pack("{s:s,s:s}", "environment", str(d, "environment"), "target",
                             str(d, "target"));
            break;
        default:
            goto bad;
        }
        ev.u.vop.repo = c.repo;
        ev.u.vop.name = c.name;
        ev.u.vop.version = c.version;
        ev.u.vop.args = args;
        ev.u.vop.res = &res;
        break;
    }
    }
    rc = apply(db, &ev, applied);
    if (ev.action == EV_TOKEN_CREATE || ev.action == EV_TOKEN_REVOKE)
        atomic_fetch_add(&db->token_gen, 1);
    goto out;
bad:
    LOG_W("replication: malformed %s event %s/%llu", event_action_names[ev.action], ev.origin,
          (unsigned long long)ev.origin_seq);
    rc = ARCA_E_INVALID;
out:
    op_result_clear(&res);
    json_decref(args);
    json_decref(e);
    return rc;
}

/* ---- state digest and range digests --------------------------------------------------- */

enum value_mode { V_RAW, V_NONE, V_JSON_NO_SEQ };

/* The replicated column families, in the whole-state digest's order (see replica.h). */
static const struct part {
    const char *name;
    enum repo_cf cf;
    enum value_mode mode;
} parts[] = {
    {"repos", CF_REPOS, V_RAW},
    {"names", CF_NAMES, V_RAW},
    {"versions", CF_VERSIONS, V_JSON_NO_SEQ},
    {"artifacts", CF_ARTIFACTS, V_JSON_NO_SEQ},
    {"blobs", CF_BLOBS, V_RAW},
    {"sha1", CF_SHA1, V_RAW},
    {"props", CF_PROPS, V_JSON_NO_SEQ},
    {"propidx", CF_PROPIDX, V_NONE},
    {"stageidx", CF_STAGEIDX, V_NONE},
    {"builds", CF_BUILDS, V_RAW},
    {"conflicts", CF_CONFLICTS, V_RAW},
    {"blobrefs", CF_BLOBREFS, V_NONE},
    {"tokens", CF_TOKENS, V_RAW},
    {"token_hash", CF_TOKEN_HASH, V_RAW},
    {"origins", CF_ORIGINS, V_RAW},
};
_Static_assert(sizeof(parts) / sizeof(parts[0]) == REPO_DIGEST_PARTS, "REPO_DIGEST_PARTS");
_Static_assert(REPO_RANGE_PREFIX_MAX <= KEY_MAX, "a prefix is at most a key");

const char *repo_digest_part_name(size_t i)
{
    return i < REPO_DIGEST_PARTS ? parts[i].name : NULL;
}

static const struct part *part_find(const char *name)
{
    for (size_t i = 0; name && i < REPO_DIGEST_PARTS; i++)
        if (strcmp(parts[i].name, name) == 0)
            return &parts[i];
    return NULL;
}

/*
 * The bytes a value is compared by (replica.h): *out points into v, or into
 * *owned (free() it).  JSON records lose their local sequence numbers
 * ("seq", "event_seq", "stage_seq", ...); a value that is not a JSON object
 * is compared as stored.  0 or -ENOMEM.
 */
static int normalise(enum value_mode mode, const char *v, size_t vl, const char **out,
                     size_t *outlen, char **owned)
{
    *owned = NULL;
    *out = mode == V_NONE ? "" : v;
    *outlen = mode == V_NONE ? 0 : vl;
    if (mode != V_JSON_NO_SEQ)
        return 0;
    json_t *o = json_loadb(v, vl, 0, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        return 0;
    }
    const char *k;
    json_t *x;
    void *tmp;
    json_object_foreach_safe(o, tmp, k, x)
    {
        size_t n = strlen(k);
        if (n >= 3 && strcmp(k + n - 3, "seq") == 0)
            json_object_del(o, k);
    }
    char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    if (!text)
        return -ENOMEM;
    *owned = text;
    *out = text;
    *outlen = strlen(text);
    return 0;
}

/* Called for each key of a scan with its normalised value; nonzero stops the scan. */
typedef int (*entry_fn)(void *arg, const char *k, size_t kl, const char *nv, size_t nvl);

/*
 * The one iteration both digests share: every key of part p that starts with
 * prefix, in key order, through ro (a snapshot, or the defaults).  Returns
 * fn's first nonzero result, -ENOMEM or ARCA_E_DB, else 0.
 */
static int scan(repo_db *db, const rocksdb_readoptions_t *ro, const struct part *p,
                const char *prefix, size_t plen, entry_fn fn, void *arg)
{
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db->db, ro, db->cf[p->cf]);
    char *err = NULL;
    int rc = 0;
    for (rocksdb_iter_seek(it, prefix, plen); rc == 0 && rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t kl, vl, nvl;
        const char *k = rocksdb_iter_key(it, &kl);
        const char *v = rocksdb_iter_value(it, &vl);
        const char *nv;
        char *owned;
        if (kl < plen || memcmp(k, prefix, plen) != 0)
            break;
        if ((rc = normalise(p->mode, v, vl, &nv, &nvl, &owned)) == 0)
            rc = fn(arg, k, kl, nv, nvl);
        free(owned);
    }
    rocksdb_iter_get_error(it, &err);
    if (err) {
        int e = db_error("digest", err);
        rc = rc ? rc : e;
    }
    rocksdb_iter_destroy(it);
    return rc;
}

/* One key into a range digest: BE64(key length) || key || BE64(value digest). */
static void feed_entry(XXH3_state_t *h, const void *k, size_t kl, uint64_t vdigest)
{
    uint8_t be[8];
    put_be64(be, kl);
    XXH3_64bits_update(h, be, 8);
    XXH3_64bits_update(h, k, kl);
    put_be64(be, vdigest);
    XXH3_64bits_update(h, be, 8);
}

/*
 * One key into the whole-state digest: BE64(key length) || key, then the
 * normalised value, length-prefixed for raw values.  This is the digest's
 * original definition; keeping it lets centres of either build compare.
 */
static void feed_state(XXH3_state_t *h, enum value_mode mode, const char *k, size_t kl,
                       const char *nv, size_t nvl)
{
    uint8_t be[8];
    put_be64(be, kl);
    XXH3_64bits_update(h, be, 8);
    XXH3_64bits_update(h, k, kl);
    if (mode == V_RAW) {
        put_be64(be, nvl);
        XXH3_64bits_update(h, be, 8);
    }
    XXH3_64bits_update(h, nv, nvl);
}

struct state_acc {
    XXH3_state_t *whole, *part;
    enum value_mode mode;
    uint64_t count;
};

static int state_entry(void *arg, const char *k, size_t kl, const char *nv, size_t nvl)
{
    struct state_acc *a = arg;
    feed_state(a->whole, a->mode, k, kl, nv, nvl);
    feed_entry(a->part, k, kl, XXH3_64bits(nv, nvl));
    a->count++;
    return 0;
}

int repo_state_digest_parts(repo_db *db, uint64_t *digest,
                            struct repo_part_digest out[REPO_DIGEST_PARTS])
{
    struct state_acc a = {XXH3_createState(), XXH3_createState(), V_RAW, 0};
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    const rocksdb_snapshot_t *snap = rocksdb_create_snapshot(db->db);
    int rc = 0;
    *digest = 0;
    if (!a.whole || !a.part || !ro || !snap) {
        rc = -ENOMEM;
        goto out;
    }
    /* One snapshot, so the parts agree with each other; a scan of everything skips the cache. */
    rocksdb_readoptions_set_snapshot(ro, snap);
    rocksdb_readoptions_set_fill_cache(ro, 0);
    XXH3_64bits_reset(a.whole);
    for (size_t i = 0; i < REPO_DIGEST_PARTS && rc == 0; i++) {
        uint8_t tag[2] = {0xff, (uint8_t)parts[i].cf};
        XXH3_64bits_update(a.whole, tag, 2);
        XXH3_64bits_reset(a.part);
        a.mode = parts[i].mode;
        a.count = 0;
        rc = scan(db, ro, &parts[i], "", 0, state_entry, &a);
        out[i] = (struct repo_part_digest){parts[i].name, a.count, XXH3_64bits_digest(a.part)};
    }
    if (rc == 0)
        *digest = XXH3_64bits_digest(a.whole);
out:
    if (snap)
        rocksdb_release_snapshot(db->db, snap);
    if (ro)
        rocksdb_readoptions_destroy(ro);
    XXH3_freeState(a.whole);
    XXH3_freeState(a.part);
    return rc;
}

int repo_state_digest(repo_db *db, uint64_t *digest)
{
    struct repo_part_digest p[REPO_DIGEST_PARTS];
    return repo_state_digest_parts(db, digest, p);
}

struct range_acc {
    struct repo_range *out;
    size_t plen;
    XXH3_state_t *all, *bucket; /* bucket: the last of out->buckets, while it fills */
};

static void bucket_close(struct range_acc *a)
{
    if (a->out->nbuckets > 0)
        a->out->buckets[a->out->nbuckets - 1].digest = XXH3_64bits_digest(a->bucket);
}

static int range_entry(void *arg, const char *k, size_t kl, const char *nv, size_t nvl)
{
    struct range_acc *a = arg;
    struct repo_range *r = a->out;
    uint64_t vd = XXH3_64bits(nv, nvl);
    feed_entry(a->all, k, kl, vd);
    r->count++;
    if (kl == a->plen) {
        r->has_exact = true; /* the first key, when there is one: the shortest sorts first */
        r->exact_digest = vd;
    } else {
        /* Keys come in order, so a bucket's keys are consecutive: one bucket fills at a time. */
        uint8_t byte = (uint8_t)k[a->plen];
        if (r->nbuckets == 0 || r->buckets[r->nbuckets - 1].byte != byte) {
            bucket_close(a);
            XXH3_64bits_reset(a->bucket);
            r->buckets[r->nbuckets++] = (struct repo_range_bucket){.byte = byte};
        }
        feed_entry(a->bucket, k, kl, vd);
        r->buckets[r->nbuckets - 1].count++;
    }
    if (r->count <= REPO_RANGE_LEAF_MAX) {
        char *copy = malloc(kl ? kl : 1);
        if (!copy)
            return -ENOMEM;
        memcpy(copy, k, kl);
        r->keys[r->nkeys++] = (struct repo_range_key){copy, kl, vd};
    } else if (r->nkeys > 0) {
        /* Too many for a leaf: the buckets answer instead. */
        for (size_t i = 0; i < r->nkeys; i++)
            free(r->keys[i].key);
        r->nkeys = 0;
    }
    return 0;
}

int repo_range_digest(repo_db *db, const char *part, const void *prefix, size_t plen,
                      struct repo_range *out)
{
    const struct part *p = part_find(part);
    struct range_acc a = {out, plen, NULL, NULL};
    int rc;
    memset(out, 0, sizeof(*out));
    if (!p)
        return ARCA_E_NOTFOUND;
    if (plen > REPO_RANGE_PREFIX_MAX)
        return ARCA_E_INVALID;
    a.all = XXH3_createState();
    a.bucket = XXH3_createState();
    if (!a.all || !a.bucket) {
        rc = -ENOMEM;
        goto out;
    }
    XXH3_64bits_reset(a.all);
    rc = scan(db, db->ropts, p, plen ? prefix : "", plen, range_entry, &a);
    if (rc == 0) {
        bucket_close(&a);
        out->digest = XXH3_64bits_digest(a.all);
        out->leaf = out->count <= REPO_RANGE_LEAF_MAX;
    }
out:
    XXH3_freeState(a.all);
    XXH3_freeState(a.bucket);
    return rc;
}

void repo_range_cleanup(struct repo_range *out)
{
    for (size_t i = 0; i < out->nkeys; i++)
        free(out->keys[i].key);
    memset(out, 0, sizeof(*out));
}

int repo_range_fold(const struct repo_range_key *keys, size_t n, uint64_t *digest)
{
    XXH3_state_t *h = XXH3_createState();
    if (!h)
        return -ENOMEM;
    XXH3_64bits_reset(h);
    for (size_t i = 0; i < n; i++)
        feed_entry(h, keys[i].key, keys[i].len, keys[i].digest);
    *digest = XXH3_64bits_digest(h);
    XXH3_freeState(h);
    return 0;
}

/* ---- narrowing two centres' ranges down to their differing keys -------------------------- */

struct diff_ctx {
    const char *part;
    repo_range_fetch_fn fetch[2];
    void *farg[2];
    repo_diff_fn found;
    void *arg;
    char prefix[REPO_RANGE_PREFIX_MAX];
};

/* RocksDB's default order: bytewise, a prefix before its extensions. */
static int key_cmp(const struct repo_range_key *a, const struct repo_range_key *b)
{
    int c = memcmp(a->key, b->key, a->len < b->len ? a->len : b->len);
    return c ? c : a->len < b->len ? -1 : a->len > b->len ? 1 : 0;
}

/*
 * A leaf carries only its keys: derives its exact key and buckets from them,
 * and checks that the keys are in order, under the prefix, and add up to the
 * count and digest the side gave.
 */
static int leaf_complete(struct diff_ctx *x, struct repo_range *r, size_t plen)
{
    uint64_t d;
    int rc;
    if (r->nkeys != r->count || r->nkeys > REPO_RANGE_LEAF_MAX)
        return ARCA_E_INVALID;
    if ((rc = repo_range_fold(r->keys, r->nkeys, &d)) != 0)
        return rc;
    if (d != r->digest)
        return ARCA_E_INVALID;
    r->has_exact = false;
    r->nbuckets = 0;
    for (size_t i = 0; i < r->nkeys;) {
        const struct repo_range_key *k = &r->keys[i];
        if (k->len < plen || memcmp(k->key, x->prefix, plen) != 0 ||
            (i > 0 && key_cmp(&r->keys[i - 1], k) >= 0))
            return ARCA_E_INVALID;
        if (k->len == plen) {
            r->has_exact = true;
            r->exact_digest = k->digest;
            i++;
            continue;
        }
        size_t j = i + 1;
        while (j < r->nkeys && r->keys[j].len > plen && r->keys[j].key[plen] == k->key[plen])
            j++;
        struct repo_range_bucket *b = &r->buckets[r->nbuckets++];
        b->byte = (uint8_t)k->key[plen];
        b->count = j - i;
        if ((rc = repo_range_fold(&r->keys[i], j - i, &b->digest)) != 0)
            return rc;
        i = j;
    }
    return 0;
}

/* The keys of leaf r under prefix + byte, borrowed (child must not be cleaned up). */
static void leaf_child(const struct repo_range *r, size_t plen, uint8_t byte,
                       struct repo_range *child)
{
    memset(child, 0, sizeof(*child));
    child->leaf = true;
    for (size_t i = 0; i < r->nkeys; i++)
        if (r->keys[i].len > plen && (uint8_t)r->keys[i].key[plen] == byte)
            child->keys[child->nkeys++] = r->keys[i];
    child->count = child->nkeys;
    /* Only fails without memory: the digest then mismatches and leaf_complete refuses it. */
    repo_range_fold(child->keys, child->nkeys, &child->digest);
}

static int report(struct diff_ctx *x, const char *key, size_t len, bool a, bool b)
{
    return x->found(x->arg, x->part, key, len,
                    a && b ? REPO_DIFF_DIFFERS : a ? REPO_DIFF_ONLY_A : REPO_DIFF_ONLY_B);
}

static int leaf_merge(struct diff_ctx *x, struct repo_range *r[2])
{
    size_t i = 0, j = 0;
    int rc = 0;
    while (rc == 0 && (i < r[0]->nkeys || j < r[1]->nkeys)) {
        const struct repo_range_key *a = i < r[0]->nkeys ? &r[0]->keys[i] : NULL;
        const struct repo_range_key *b = j < r[1]->nkeys ? &r[1]->keys[j] : NULL;
        int c = !a ? 1 : !b ? -1 : key_cmp(a, b);
        if (c < 0) {
            rc = report(x, a->key, a->len, true, false);
            i++;
        } else if (c > 0) {
            rc = report(x, b->key, b->len, false, true);
            j++;
        } else {
            if (a->digest != b->digest)
                rc = report(x, a->key, a->len, true, true);
            i++;
            j++;
        }
    }
    return rc;
}

static const struct repo_range_bucket *bucket_of(const struct repo_range *r, uint8_t byte)
{
    for (size_t i = 0; i < r->nbuckets; i++)
        if (r->buckets[i].byte == byte)
            return &r->buckets[i];
    return NULL;
}

/* Compares both sides' ranges under x->prefix[0..plen) and goes down where they differ. */
static int diff_level(struct diff_ctx *x, size_t plen, struct repo_range *r[2])
{
    int rc = 0;
    for (int s = 0; s < 2; s++)
        if (r[s]->leaf && (rc = leaf_complete(x, r[s], plen)) != 0)
            return rc;
    if (r[0]->count == r[1]->count && r[0]->digest == r[1]->digest)
        return 0;
    if (r[0]->leaf && r[1]->leaf)
        return leaf_merge(x, r);
    if ((r[0]->has_exact || r[1]->has_exact) &&
        (r[0]->has_exact != r[1]->has_exact || r[0]->exact_digest != r[1]->exact_digest) &&
        (rc = report(x, x->prefix, plen, r[0]->has_exact, r[1]->has_exact)) != 0)
        return rc;
    for (unsigned byte = 0; byte < 256 && rc == 0; byte++) {
        const struct repo_range_bucket *b[2] = {bucket_of(r[0], (uint8_t)byte),
                                                bucket_of(r[1], (uint8_t)byte)};
        if ((!b[0] && !b[1]) ||
            (b[0] && b[1] && b[0]->count == b[1]->count && b[0]->digest == b[1]->digest))
            continue;
        if (plen == REPO_RANGE_PREFIX_MAX)
            return ARCA_E_INVALID; /* no key is that long */
        struct repo_range *c[2] = {malloc(sizeof(**c)), malloc(sizeof(**c))};
        bool owned[2] = {false, false};
        x->prefix[plen] = (char)byte;
        for (int s = 0; s < 2 && rc == 0; s++) {
            if (!c[s]) {
                rc = -ENOMEM;
            } else if (r[s]->leaf) {
                leaf_child(r[s], plen, (uint8_t)byte, c[s]);
            } else if (!b[s]) {
                memset(c[s], 0, sizeof(*c[s])); /* nothing there: an empty leaf, no need to ask */
                c[s]->leaf = true;
                repo_range_fold(NULL, 0, &c[s]->digest);
            } else {
                memset(c[s], 0, sizeof(*c[s]));
                owned[s] = true;
                rc = x->fetch[s](x->farg[s], x->part, x->prefix, plen + 1, c[s]);
            }
        }
        if (rc == 0)
            rc = diff_level(x, plen + 1, c);
        for (int s = 0; s < 2; s++) {
            if (c[s] && owned[s])
                repo_range_cleanup(c[s]);
            free(c[s]);
        }
    }
    return rc;
}

int repo_range_diff(const char *part, repo_range_fetch_fn fetch_a, void *arg_a,
                    repo_range_fetch_fn fetch_b, void *arg_b, repo_diff_fn found, void *arg)
{
    struct diff_ctx *x = malloc(sizeof(*x));
    struct repo_range *r[2] = {malloc(sizeof(**r)), malloc(sizeof(**r))};
    int rc = -ENOMEM;
    if (!x || !r[0] || !r[1])
        goto out;
    memset(r[0], 0, sizeof(*r[0]));
    memset(r[1], 0, sizeof(*r[1]));
    *x = (struct diff_ctx){.part = part, .fetch = {fetch_a, fetch_b}, .farg = {arg_a, arg_b},
                           .found = found, .arg = arg};
    if ((rc = fetch_a(arg_a, part, "", 0, r[0])) == 0 &&
        (rc = fetch_b(arg_b, part, "", 0, r[1])) == 0)
        rc = diff_level(x, 0, r);
out:
    for (int s = 0; s < 2; s++) {
        if (r[s])
            repo_range_cleanup(r[s]);
        free(r[s]);
    }
    free(x);
    return rc;
}
