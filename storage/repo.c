/*
 * The repository index: opening RocksDB, record encodings, point reads and
 * paginated listings.  Every write goes through apply in event.c.
 */
#include "repo_int.h"

#include "arca_err.h"
#include "hlc.h"
#include "log.h"
#include "token.h"
#include "util.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

static const char *const cf_names[CF_COUNT] = {
    [CF_DEFAULT] = "default", [CF_META] = "meta",         [CF_REPOS] = "repos",
    [CF_NAMES] = "names",     [CF_VERSIONS] = "versions", [CF_VTIME] = "vtime",
    [CF_ARTIFACTS] = "artifacts", [CF_BLOBS] = "blobs",   [CF_SHA1] = "sha1",
    [CF_EVENTS] = "events",
    [CF_TOKENS] = "tokens",
    [CF_TOKEN_HASH] = "token_hash",
    [CF_TOKEN_USED] = "token_used",
    [CF_VEVENTS] = "vevents",
    [CF_PROPS] = "props",
    [CF_PROPIDX] = "propidx",
    [CF_BLOBREFS] = "blobrefs",
    [CF_STAGEIDX] = "stageidx",
    [CF_BUILDS] = "builds",
    [CF_DEPLOYS] = "deploys",
    [CF_MERKLE] = "merkle",
    [CF_ORIGINS] = "origins",
    [CF_CONFLICTS] = "conflicts",
    [CF_OMERKLE] = "omerkle",
    [CF_OCHECKPOINTS] = "ocheckpoints",
};

/*
 * Index memory is bounded whatever the data size: the block cache holds data,
 * index and filter blocks; all memtables together flush past
 * MEMTABLES_BYTES (RocksDB's default is 64 MiB per column family and no total,
 * which let ~22 families grow to ~220 MiB over a 100k-event replication backlog).
 */
#define BLOCK_CACHE_BYTES (32u << 20)
#define MEMTABLES_BYTES (32u << 20)
#define MEMTABLE_BYTES (8u << 20)
#define BLOB_REC_HEAD (1 + 20 + 16 + 8 + 4)

/* ---- small helpers ---------------------------------------------------- */

int db_error(const char *what, char *err)
{
    LOG_E("index: %s: %s", what, err ? err : "unknown RocksDB error");
    rocksdb_free(err);
    return ARCA_E_DB;
}

int db_get(repo_db *db, enum repo_cf cf, const char *key, size_t klen, char **val, size_t *vlen)
{
    char *err = NULL;
    size_t len = 0;
    char *v = rocksdb_get_cf(db->db, db->ropts, db->cf[cf], key, klen, &len, &err);
    if (err)
        return db_error("get", err);
    if (!v)
        return ARCA_E_NOTFOUND;
    if (val) {
        *val = v;
        if (vlen)
            *vlen = len;
    } else {
        rocksdb_free(v);
    }
    return 0;
}

size_t key_make(char *buf, bool trailing, const char *a, const char *b, const char *c,
                const char *d)
{
    const char *segs[4] = {a, b, c, d};
    size_t n = 0;
    for (int i = 0; i < 4 && segs[i]; i++) {
        size_t l = strlen(segs[i]);
        if (i > 0)
            buf[n++] = '\0';
        memcpy(buf + n, segs[i], l);
        n += l;
    }
    if (trailing)
        buf[n++] = '\0';
    return n;
}

void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

size_t vtime_key(char *buf, const char *repo, const char *name, uint64_t created_ms,
                 const char *version)
{
    size_t n = key_make(buf, true, repo, name, NULL, NULL);
    size_t vl = strlen(version);
    put_be64((uint8_t *)buf + n, UINT64_MAX - created_ms);
    memcpy(buf + n + 8, version, vl);
    return n + 8 + vl;
}

/* ---- records ---------------------------------------------------------- */

static char *dump(json_t *o, size_t *len)
{
    char *s = NULL;
    if (o) {
        s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(o);
    }
    if (s)
        *len = strlen(s);
    return s;
}

static json_t *load(const char *v, size_t len)
{
    json_error_t e;
    json_t *o = json_loadb(v, len, 0, &e);
    if (!o)
        LOG_E("index: unreadable record: %s", e.text);
    return o;
}

/* Reads an unsigned field; jansson stores integers as signed 64-bit. */
static int get_u64(json_t *o, const char *key, uint64_t *out)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return ARCA_E_DB;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int get_hex(json_t *o, const char *key, uint8_t *out, size_t len)
{
    const char *s = json_string_value(json_object_get(o, key));
    if (!s || hex_decode(s, strlen(s), out, len) != 0)
        return ARCA_E_DB;
    return 0;
}

static json_t *hexstr(const uint8_t *b, size_t len)
{
    char hex[65];
    hex_encode(b, len, hex);
    return json_string(hex);
}

static uint64_t opt_u64(json_t *o, const char *key);
static void str_field(char *dst, size_t cap, json_t *o, const char *key);

char *rec_artifact_encode(const struct artifact *a, size_t *len)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "sha256", hexstr(a->dig.sha256, 32));
    json_object_set_new(o, "sha1", hexstr(a->dig.sha1, 20));
    json_object_set_new(o, "md5", hexstr(a->dig.md5, 16));
    json_object_set_new(o, "size", json_integer((json_int_t)a->dig.size));
    json_object_set_new(o, "created_ms", json_integer((json_int_t)a->created_ms));
    json_object_set_new(o, "created_by", json_string(a->created_by));
    json_object_set_new(o, "event_seq", json_integer((json_int_t)a->event_seq));
    json_object_set_new(o, "hlc", json_integer((json_int_t)a->hlc));
    json_object_set_new(o, "origin", json_string(a->origin));
    if (a->revoked)
        json_object_set_new(o, "revoked", json_true());
    return dump(o, len);
}

/*
 * Reading an artifact record is on every download's path, and jansson's
 * general parser (a hash table and an allocation per member) cost ~8% of a
 * 4 KiB GET's CPU.  The records are written by rec_artifact_encode: one flat
 * object of strings, unsigned integers and true.  This reads exactly that
 * shape; anything else (an escape in a string, a nested value, a sign, a
 * missing field, trailing bytes) returns 1 and is left to jansson, which
 * also reports what is wrong.  Both read a record the same way
 * (test_repo.c).
 */
struct flat_val {
    const char *s;  /* a string's bytes, or NULL for a number or true/false */
    size_t len;
    uint64_t num;
    int lit;        /* 1 true, 0 false, -1 neither */
};

static const char *flat_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* A string without escapes or control characters; p is past the opening quote. */
static const char *flat_str(const char *p, const char *end, const char **s, size_t *len)
{
    const char *q = p;
    while (q < end && *q != '"') {
        if (*q == '\\' || (unsigned char)*q < 0x20)
            return NULL;
        q++;
    }
    if (q >= end)
        return NULL;
    *s = p;
    *len = (size_t)(q - p);
    return q + 1;
}

static const char *flat_value(const char *p, const char *end, struct flat_val *v)
{
    v->s = NULL;
    v->len = 0;
    v->lit = -1;
    v->num = 0;
    if (p < end && *p == '"')
        return flat_str(p + 1, end, &v->s, &v->len);
    if (p < end && *p >= '0' && *p <= '9') {
        int digits = 0;
        if (*p == '0' && p + 1 < end && p[1] >= '0' && p[1] <= '9')
            return NULL; /* a leading zero is not JSON */
        while (p < end && *p >= '0' && *p <= '9') {
            if (++digits > 18) /* beyond that, let jansson judge the range */
                return NULL;
            v->num = v->num * 10 + (uint64_t)(*p++ - '0');
        }
        if (p < end && (*p == '.' || *p == 'e' || *p == 'E'))
            return NULL;
        return p;
    }
    if (end - p >= 4 && memcmp(p, "true", 4) == 0) {
        v->lit = 1;
        return p + 4;
    }
    if (end - p >= 5 && memcmp(p, "false", 5) == 0) {
        v->lit = 0;
        return p + 5;
    }
    return NULL;
}

static bool flat_key(const char *k, size_t kl, const char *want)
{
    return strlen(want) == kl && memcmp(k, want, kl) == 0;
}

static bool flat_hex(const struct flat_val *v, uint8_t *out, size_t n)
{
    return v->s && hex_decode(v->s, v->len, out, n) == 0;
}

static void flat_copy(char *dst, size_t cap, const struct flat_val *v)
{
    size_t n = v->len < cap - 1 ? v->len : cap - 1;
    memcpy(dst, v->s, n);
    dst[n] = '\0';
}

static int artifact_decode_flat(const char *v, size_t len, struct artifact *a)
{
    enum { HAVE_SHA256 = 1, HAVE_SHA1 = 2, HAVE_MD5 = 4, HAVE_SIZE = 8, HAVE_CREATED = 16,
           HAVE_SEQ = 32, HAVE_ALL = 63 };
    const char *p = v, *end = v + len;
    unsigned have = 0;
    a->created_by[0] = a->origin[0] = '\0';
    a->hlc = 0;
    a->revoked = false;
    p = flat_ws(p, end);
    if (p >= end || *p++ != '{')
        return 1;
    p = flat_ws(p, end);
    if (p < end && *p == '}')
        return 1; /* empty: the required fields are missing */
    for (;;) {
        const char *k;
        size_t kl;
        struct flat_val val;
        if (p >= end || *p != '"' || !(p = flat_str(p + 1, end, &k, &kl)))
            return 1;
        p = flat_ws(p, end);
        if (p >= end || *p++ != ':')
            return 1;
        if (!(p = flat_value(flat_ws(p, end), end, &val)))
            return 1;
        bool str = val.s != NULL, num = !str && val.lit < 0;
        if (flat_key(k, kl, "sha256")) {
            if (!flat_hex(&val, a->dig.sha256, 32))
                return 1;
            have |= HAVE_SHA256;
        } else if (flat_key(k, kl, "sha1")) {
            if (!flat_hex(&val, a->dig.sha1, 20))
                return 1;
            have |= HAVE_SHA1;
        } else if (flat_key(k, kl, "md5")) {
            if (!flat_hex(&val, a->dig.md5, 16))
                return 1;
            have |= HAVE_MD5;
        } else if (flat_key(k, kl, "size") || flat_key(k, kl, "created_ms") ||
                   flat_key(k, kl, "event_seq") || flat_key(k, kl, "hlc")) {
            if (!num)
                return 1;
            if (k[0] == 's') {
                a->dig.size = val.num;
                have |= HAVE_SIZE;
            } else if (k[0] == 'c') {
                a->created_ms = val.num;
                have |= HAVE_CREATED;
            } else if (k[0] == 'e') {
                a->event_seq = val.num;
                have |= HAVE_SEQ;
            } else {
                a->hlc = val.num;
            }
        } else if (flat_key(k, kl, "created_by") || flat_key(k, kl, "origin")) {
            if (!str)
                return 1;
            if (k[0] == 'c')
                flat_copy(a->created_by, sizeof(a->created_by), &val);
            else
                flat_copy(a->origin, sizeof(a->origin), &val);
        } else if (flat_key(k, kl, "revoked")) {
            if (val.lit < 0)
                return 1;
            a->revoked = val.lit == 1;
        }
        p = flat_ws(p, end);
        if (p < end && *p == ',') {
            p = flat_ws(p + 1, end);
            continue;
        }
        if (p < end && *p == '}')
            break;
        return 1;
    }
    return flat_ws(p + 1, end) == end && have == HAVE_ALL ? 0 : 1;
}

int rec_artifact_decode(const char *v, size_t len, struct artifact *a)
{
    if (artifact_decode_flat(v, len, a) == 0)
        return 0;
    int rc = ARCA_E_DB;
    json_t *o = load(v, len);
    const char *by;
    if (!o)
        goto out;
    if (get_hex(o, "sha256", a->dig.sha256, 32) || get_hex(o, "sha1", a->dig.sha1, 20) ||
        get_hex(o, "md5", a->dig.md5, 16) || get_u64(o, "size", &a->dig.size) ||
        get_u64(o, "created_ms", &a->created_ms) || get_u64(o, "event_seq", &a->event_seq))
        goto out;
    by = json_string_value(json_object_get(o, "created_by"));
    snprintf(a->created_by, sizeof(a->created_by), "%s", by ? by : "");
    a->hlc = opt_u64(o, "hlc");
    str_field(a->origin, sizeof(a->origin), o, "origin");
    a->revoked = json_is_true(json_object_get(o, "revoked"));
    rc = 0;
out:
    if (rc != 0)
        LOG_E("index: malformed artifact record");
    json_decref(o);
    return rc;
}

char *rec_created_encode(uint64_t created_ms, size_t *len)
{
    return dump(json_pack("{sI}", "created_ms", (json_int_t)created_ms), len);
}

int rec_created_decode(const char *v, size_t len, uint64_t *created_ms)
{
    json_t *o = load(v, len);
    int rc = o ? get_u64(o, "created_ms", created_ms) : ARCA_E_DB;
    json_decref(o);
    return rc;
}

static void str_field(char *dst, size_t cap, json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    snprintf(dst, cap, "%s", v ? v : "");
}

/* Optional fields are written only when set, so an unpromoted version stays small. */
char *rec_vstate_encode(const struct version_state *st, size_t *len)
{
    json_t *o = json_pack("{sIsIsI}", "created_ms", (json_int_t)st->created_ms, "file_count",
                          (json_int_t)st->file_count, "total_bytes", (json_int_t)st->total_bytes);
    if (!o)
        return NULL;
    if (st->stage[0]) {
        json_object_set_new(o, "stage", json_string(st->stage));
        json_object_set_new(o, "stage_seq", json_integer((json_int_t)st->stage_seq));
        json_object_set_new(o, "stage_hlc", json_integer((json_int_t)st->stage_hlc));
        json_object_set_new(o, "stage_origin", json_string(st->stage_origin));
    }
    if (st->revoked_ms) {
        json_object_set_new(o, "revoked_by", json_string(st->revoked_by));
        json_object_set_new(o, "revoke_reason", json_string(st->revoke_reason));
        json_object_set_new(o, "revoke_seq", json_integer((json_int_t)st->revoke_seq));
        json_object_set_new(o, "revoke_hlc", json_integer((json_int_t)st->revoke_hlc));
        json_object_set_new(o, "revoke_origin", json_string(st->revoke_origin));
    }
    if (st->deleted_ms) {
        json_object_set_new(o, "deleted_by", json_string(st->deleted_by));
        json_object_set_new(o, "delete_seq", json_integer((json_int_t)st->delete_seq));
        json_object_set_new(o, "delete_hlc", json_integer((json_int_t)st->delete_hlc));
        json_object_set_new(o, "delete_origin", json_string(st->delete_origin));
    }
    if (st->has_build) {
        json_object_set_new(o, "has_build", json_true());
        json_object_set_new(o, "build_hlc", json_integer((json_int_t)st->build_hlc));
        json_object_set_new(o, "build_origin", json_string(st->build_origin));
    }
    return dump(o, len);
}

static uint64_t opt_u64(json_t *o, const char *key)
{
    uint64_t v = 0;
    if (json_object_get(o, key) && get_u64(o, key, &v) != 0)
        v = 0;
    return v;
}

int rec_vstate_decode(const char *v, size_t len, struct version_state *st)
{
    int rc = ARCA_E_DB;
    json_t *o = load(v, len);
    memset(st, 0, sizeof(*st));
    if (o && get_u64(o, "created_ms", &st->created_ms) == 0 &&
        get_u64(o, "file_count", &st->file_count) == 0 &&
        get_u64(o, "total_bytes", &st->total_bytes) == 0) {
        str_field(st->stage, sizeof(st->stage), o, "stage");
        st->stage_seq = opt_u64(o, "stage_seq");
        str_field(st->revoked_by, sizeof(st->revoked_by), o, "revoked_by");
        str_field(st->revoke_reason, sizeof(st->revoke_reason), o, "revoke_reason");
        st->revoke_seq = opt_u64(o, "revoke_seq");
        str_field(st->deleted_by, sizeof(st->deleted_by), o, "deleted_by");
        st->delete_seq = opt_u64(o, "delete_seq");
        st->has_build = json_is_true(json_object_get(o, "has_build"));
        st->stage_hlc = opt_u64(o, "stage_hlc");
        str_field(st->stage_origin, sizeof(st->stage_origin), o, "stage_origin");
        st->revoke_hlc = opt_u64(o, "revoke_hlc");
        str_field(st->revoke_origin, sizeof(st->revoke_origin), o, "revoke_origin");
        st->delete_hlc = opt_u64(o, "delete_hlc");
        /* The wall-clock times are the HLCs' physical part: stored once. */
        st->stage_ms = HLC_MS(st->stage_hlc);
        st->revoked_ms = HLC_MS(st->revoke_hlc);
        st->deleted_ms = HLC_MS(st->delete_hlc);
        str_field(st->delete_origin, sizeof(st->delete_origin), o, "delete_origin");
        st->build_hlc = opt_u64(o, "build_hlc");
        str_field(st->build_origin, sizeof(st->build_origin), o, "build_origin");
        rc = 0;
    }
    if (rc != 0)
        LOG_E("index: malformed version record");
    json_decref(o);
    return rc;
}

char *rec_blob_encode(const struct blob_digests *dig, const struct blob_blocks *blocks,
                      size_t *len)
{
    size_t n = BLOB_REC_HEAD + (size_t)blocks->count * 8;
    uint8_t *p = malloc(n);
    if (!p)
        return NULL;
    p[0] = 1;
    memcpy(p + 1, dig->sha1, 20);
    memcpy(p + 21, dig->md5, 16);
    put_be64(p + 37, dig->size);
    put_be32(p + 45, blocks->count);
    for (uint32_t i = 0; i < blocks->count; i++)
        put_be64(p + BLOB_REC_HEAD + (size_t)i * 8, blocks->sums[i]);
    *len = n;
    return (char *)p;
}

int rec_blob_decode(const char *v, size_t len, struct blob_digests *dig,
                    struct blob_blocks *blocks)
{
    const uint8_t *p = (const uint8_t *)v;
    if (len < BLOB_REC_HEAD || p[0] != 1)
        goto bad;
    uint32_t count = get_be32(p + 45);
    if (len != BLOB_REC_HEAD + (size_t)count * 8)
        goto bad;
    memcpy(dig->sha1, p + 1, 20);
    memcpy(dig->md5, p + 21, 16);
    dig->size = get_be64(p + 37);
    if (blocks) {
        blocks->count = count;
        blocks->sums = NULL;
        if (count > 0) {
            blocks->sums = malloc((size_t)count * sizeof(uint64_t));
            if (!blocks->sums) {
                blocks->count = 0;
                return -ENOMEM;
            }
            for (uint32_t i = 0; i < count; i++)
                blocks->sums[i] = get_be64(p + BLOB_REC_HEAD + (size_t)i * 8);
        }
    }
    return 0;
bad:
    LOG_E("index: malformed blob record");
    return ARCA_E_DB;
}

char *rec_counters_encode(const struct repo_counters *c, size_t *len)
{
    char head[65];
    hex_encode(c->head, 32, head);
    return dump(json_pack("{sIsssIsIsIsIsI}", "next_seq", (json_int_t)c->next_seq, "head", head,
                          "blob_count", (json_int_t)c->st.blob_count, "stored_bytes",
                          (json_int_t)c->st.stored_bytes, "artifact_count",
                          (json_int_t)c->st.artifact_count, "logical_bytes",
                          (json_int_t)c->st.logical_bytes, "event_count",
                          (json_int_t)c->st.event_count),
                len);
}

static int counters_decode(const char *v, size_t len, struct repo_counters *c)
{
    int rc = ARCA_E_DB;
    json_t *o = load(v, len);
    if (o && get_u64(o, "next_seq", &c->next_seq) == 0 && get_hex(o, "head", c->head, 32) == 0 &&
        get_u64(o, "blob_count", &c->st.blob_count) == 0 &&
        get_u64(o, "stored_bytes", &c->st.stored_bytes) == 0 &&
        get_u64(o, "artifact_count", &c->st.artifact_count) == 0 &&
        get_u64(o, "logical_bytes", &c->st.logical_bytes) == 0 &&
        get_u64(o, "event_count", &c->st.event_count) == 0)
        rc = 0;
    if (rc != 0)
        LOG_E("index: malformed counters record");
    json_decref(o);
    return rc;
}

/* ---- open and close --------------------------------------------------- */

/*
 * Opens every column family the database already has (RocksDB refuses an
 * open that omits one) plus ours, creating ours when missing (read-write only).
 */
static int open_db(repo_db *db, const char *dir)
{
    int rc = 0;
    char *err = NULL;
    size_t nexist = 0;
    char **exist = rocksdb_list_column_families(db->opts, dir, &nexist, &err);
    const char **names = NULL;
    const rocksdb_options_t **opts = NULL;
    size_t n = 0;
    if (err) {
        /* A database that does not exist yet has no families to list. */
        rocksdb_free(err);
        err = NULL;
        if (db->readonly) {
            LOG_E("index: no index in %s", dir);
            rc = ARCA_E_DB;
            goto out;
        }
        nexist = 0;
    }
    names = calloc(CF_COUNT + nexist, sizeof(*names));
    opts = calloc(CF_COUNT + nexist, sizeof(*opts));
    if (!names || !opts) {
        rc = -ENOMEM;
        goto out;
    }
    for (int i = 0; i < CF_COUNT; i++) {
        bool found = false;
        for (size_t k = 0; k < nexist && !found; k++)
            found = strcmp(exist[k], cf_names[i]) == 0;
        if (db->readonly && !found) {
            LOG_E("index: %s lacks column family %s", dir, cf_names[i]);
            rc = ARCA_E_DB;
            goto out;
        }
        names[n++] = cf_names[i];
    }
    for (size_t k = 0; k < nexist; k++) {
        bool ours = false;
        for (int i = 0; i < CF_COUNT && !ours; i++)
            ours = strcmp(exist[k], cf_names[i]) == 0;
        if (!ours)
            names[n++] = exist[k];
    }
    for (size_t i = 0; i < n; i++)
        opts[i] = db->opts;
    db->handles = calloc(n, sizeof(*db->handles));
    if (!db->handles) {
        rc = -ENOMEM;
        goto out;
    }
    if (db->readonly)
        db->db = rocksdb_open_for_read_only_column_families(db->opts, dir, (int)n, names, opts,
                                                            db->handles, 0, &err);
    else
        db->db = rocksdb_open_column_families(db->opts, dir, (int)n, names, opts, db->handles,
                                              &err);
    if (err) {
        db->db = NULL;
        if (strstr(err, "LOCK") && strstr(err, "Resource temporarily unavailable"))
            LOG_E("index: %s is in use by another arcad (its index/LOCK is held); one data "
                  "directory serves one arcad at a time",
                  dir);
        rc = db_error("open", err);
        goto out;
    }
    db->nhandles = n;
    for (int i = 0; i < CF_COUNT; i++)
        db->cf[i] = db->handles[i];
out:
    free(names);
    free(opts);
    if (exist)
        rocksdb_list_column_families_destroy(exist, nexist);
    return rc;
}

static int load_state(repo_db *db, const char *centre_id)
{
    int rc;
    char *v = NULL, *err = NULL;
    size_t vlen = 0;

    rc = db_get(db, CF_META, "state", 5, &v, &vlen);
    if (rc == ARCA_E_NOTFOUND) {
        memset(&db->ctr, 0, sizeof(db->ctr));
        db->ctr.next_seq = 1;
        rc = 0;
    } else if (rc == 0) {
        rc = counters_decode(v, vlen, &db->ctr);
    }
    rocksdb_free(v);
    v = NULL;
    if (rc != 0)
        goto out;

    rc = db_get(db, CF_META, "centre", 6, &v, &vlen);
    if (rc == 0) {
        if (vlen > CENTRE_MAX) {
            LOG_E("index: stored centre id is too long");
            rc = ARCA_E_DB;
            goto out;
        }
        memcpy(db->centre, v, vlen);
        db->centre[vlen] = '\0';
        /* Events already carry the stored id as their origin: a new id would fork the log. */
        if (centre_id && strcmp(centre_id, db->centre) != 0) {
            LOG_E("index: this data directory belongs to centre '%s', not '%s'", db->centre,
                  centre_id);
            rc = ARCA_E_CONFIG;
        }
    } else if (rc == ARCA_E_NOTFOUND && centre_id && !db->readonly) {
        snprintf(db->centre, sizeof(db->centre), "%s", centre_id);
        rocksdb_put_cf(db->db, db->wopts, db->cf[CF_META], "centre", 6, db->centre,
                       strlen(db->centre), &err);
        rc = err ? db_error("put centre", err) : 0;
    } else if (rc == ARCA_E_NOTFOUND) {
        rc = 0;
    }
    /*
     * An index from before per-origin numbering has only its own events, each
     * with origin_seq = seq: its own counter continues from there.
     */
    if (rc == 0 && !db->readonly && db->centre[0] && db->ctr.next_seq > 1) {
        rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db->db, db->ropts, db->cf[CF_ORIGINS]);
        rocksdb_iter_seek_to_first(it);
        bool empty = !rocksdb_iter_valid(it);
        rocksdb_iter_destroy(it);
        if (empty) {
            uint8_t be[8];
            put_be64(be, db->ctr.next_seq - 1);
            rocksdb_put_cf(db->db, db->wopts, db->cf[CF_ORIGINS], db->centre, strlen(db->centre),
                           (const char *)be, 8, &err);
            rc = err ? db_error("put origin", err) : 0;
        }
    }
out:
    rocksdb_free(v);
    return rc;
}

static int db_open(const char *dir, const char *centre_id, bool readonly, repo_db **out)
{
    int rc = 0;
    repo_db *db = calloc(1, sizeof(*db));
    *out = NULL;
    if (!db)
        return -ENOMEM;
    pthread_mutex_init(&db->apply_mu, NULL);
    stages_init_defaults(&db->policy);
    db->readonly = readonly;
    if (!readonly && (!centre_id || centre_id[0] == '\0' || strlen(centre_id) > CENTRE_MAX)) {
        LOG_E("index: centre id must be 1..%d bytes", CENTRE_MAX);
        rc = ARCA_E_CONFIG;
        goto out;
    }
    if (!readonly && (rc = fs_mkdirs(dir, 0755)) != 0) {
        LOG_E("index: cannot create %s: %s", dir, strerror(-rc));
        goto out;
    }
    db->opts = rocksdb_options_create();
    db->cache = rocksdb_cache_create_lru(BLOCK_CACHE_BYTES);
    db->ropts = rocksdb_readoptions_create();
    db->wopts = rocksdb_writeoptions_create();
    rocksdb_block_based_table_options_t *bbto = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_block_cache(bbto, db->cache);
    rocksdb_block_based_options_set_cache_index_and_filter_blocks(bbto, 1);
    rocksdb_block_based_options_set_pin_l0_filter_and_index_blocks_in_cache(bbto, 1);
    rocksdb_block_based_options_set_filter_policy(bbto,
                                                  rocksdb_filterpolicy_create_bloom(10));
    rocksdb_options_set_block_based_table_factory(db->opts, bbto);
    rocksdb_block_based_options_destroy(bbto);
    rocksdb_options_increase_parallelism(db->opts, 2);
    rocksdb_options_set_create_if_missing(db->opts, !readonly);
    rocksdb_options_set_create_missing_column_families(db->opts, !readonly);
    rocksdb_options_set_compression(db->opts, rocksdb_lz4_compression);
    rocksdb_options_set_keep_log_file_num(db->opts, 4);
    rocksdb_options_set_write_buffer_size(db->opts, MEMTABLE_BYTES);
    rocksdb_options_set_db_write_buffer_size(db->opts, MEMTABLES_BYTES);
    /* Every apply is one synced batch: a 201 means the index change is durable. */
    rocksdb_writeoptions_set_sync(db->wopts, 1);
    if ((rc = open_db(db, dir)) != 0)
        goto out;
    if ((rc = load_state(db, centre_id)) != 0 || (rc = puts_load(db)) != 0)
        goto out;
    if (!readonly && (rc = merkle_catch_up(db)) != 0)
        goto out;
    *out = db;
    db = NULL;
out:
    repo_db_free(db);
    return rc;
}

int repo_db_open(const char *dir, const char *centre_id, repo_db **out)
{
    return db_open(dir, centre_id, false, out);
}

int repo_db_open_readonly(const char *dir, repo_db **out)
{
    return db_open(dir, NULL, true, out);
}

void repo_db_free(repo_db *db)
{
    if (!db)
        return;
    for (size_t i = 0; i < db->nhandles; i++)
        rocksdb_column_family_handle_destroy(db->handles[i]);
    free(db->handles);
    if (db->db)
        rocksdb_close(db->db);
    if (db->ropts)
        rocksdb_readoptions_destroy(db->ropts);
    if (db->wopts)
        rocksdb_writeoptions_destroy(db->wopts);
    if (db->opts)
        rocksdb_options_destroy(db->opts);
    if (db->cache)
        rocksdb_cache_destroy(db->cache);
    pthread_mutex_destroy(&db->apply_mu);
    for (size_t i = 0; i < STAGES_MAX; i++)
        for (size_t j = 0; j < GATE_RULES_MAX; j++)
            if (db->gate_re_set[i][j])
                regfree(&db->gate_re[i][j]);
    free(db);
}

/* ---- point reads ------------------------------------------------------ */

static int coord_valid(const struct coord *c, bool with_path)
{
    const char *why;
    if (coord_repo_check(c->repo, strlen(c->repo), &why) ||
        coord_segment_check(c->name, strlen(c->name), &why) ||
        coord_segment_check(c->version, strlen(c->version), &why) ||
        (with_path && coord_path_check(c->path, strlen(c->path), &why)))
        return ARCA_E_INVALID;
    return 0;
}

int repo_get_artifact(repo_db *db, const struct coord *c, struct artifact *out)
{
    char key[KEY_MAX], *v = NULL;
    size_t vlen = 0;
    int rc;
    if ((rc = coord_valid(c, true)) != 0)
        goto out;
    size_t klen = key_make(key, false, c->repo, c->name, c->version, c->path);
    if ((rc = db_get(db, CF_ARTIFACTS, key, klen, &v, &vlen)) != 0)
        goto out;
    memset(out, 0, sizeof(*out));
    out->coord = *c;
    rc = rec_artifact_decode(v, vlen, out);
out:
    rocksdb_free(v);
    return rc;
}

int repo_get_blob(repo_db *db, const uint8_t sha256[32], struct blob_digests *dig,
                  struct blob_blocks *blocks)
{
    char *v = NULL;
    size_t vlen = 0;
    int rc = db_get(db, CF_BLOBS, (const char *)sha256, 32, &v, &vlen);
    if (rc == 0) {
        memcpy(dig->sha256, sha256, 32);
        rc = rec_blob_decode(v, vlen, dig, blocks);
    }
    rocksdb_free(v);
    return rc;
}

int repo_find_sha1(repo_db *db, const uint8_t sha1[20], uint8_t sha256_out[32])
{
    char *v = NULL;
    size_t vlen = 0;
    int rc = db_get(db, CF_SHA1, (const char *)sha1, 20, &v, &vlen);
    if (rc == 0) {
        if (vlen == 32) {
            memcpy(sha256_out, v, 32);
        } else {
            LOG_E("index: malformed sha1 record");
            rc = ARCA_E_DB;
        }
    }
    rocksdb_free(v);
    return rc;
}

int repo_repo_exists(repo_db *db, const char *repo)
{
    const char *why;
    if (!repo || coord_repo_check(repo, strlen(repo), &why) != 0)
        return ARCA_E_NOTFOUND;
    return db_get(db, CF_REPOS, repo, strlen(repo), NULL, NULL);
}

int repo_name_exists(repo_db *db, const char *repo, const char *name)
{
    struct coord c;
    const char *why;
    char key[KEY_MAX];
    if (coord_set(&c, repo, name, "x", NULL, &why) != 0)
        return ARCA_E_NOTFOUND;
    return db_get(db, CF_NAMES, key, key_make(key, false, repo, name, NULL, NULL), NULL, NULL);
}

int repo_version_exists(repo_db *db, const char *repo, const char *name, const char *version)
{
    struct coord c;
    const char *why;
    char key[KEY_MAX];
    if (coord_set(&c, repo, name, version, NULL, &why) != 0)
        return ARCA_E_NOTFOUND;
    return db_get(db, CF_VERSIONS, key, key_make(key, false, repo, name, version, NULL), NULL,
                  NULL);
}

int repo_get_stats(repo_db *db, struct repo_stats *st)
{
    pthread_mutex_lock(&db->apply_mu);
    *st = db->ctr.st;
    pthread_mutex_unlock(&db->apply_mu);
    return 0;
}

int event_read(repo_db *db, uint64_t seq, char **json)
{
    uint8_t key[8];
    char *v = NULL;
    size_t vlen = 0;
    put_be64(key, seq);
    int rc = db_get(db, CF_EVENTS, (const char *)key, 8, &v, &vlen);
    if (rc == 0) {
        *json = malloc(vlen + 1);
        if (*json) {
            memcpy(*json, v, vlen);
            (*json)[vlen] = '\0';
        } else {
            rc = -ENOMEM;
        }
    }
    rocksdb_free(v);
    return rc;
}

/* ---- listings --------------------------------------------------------- */

/*
 * A listing walks the keys under one prefix.  Its cursor is a tag letter
 * naming the kind of listing, 8 hex digits of the prefix's xxh3 (which
 * repository, artifact or version it lists) and the hex of the last key's
 * suffix after the prefix.  So a cursor from one listing is rejected by any
 * other, even of the same kind, and the longest suffix (a 1024-byte path)
 * fits in REPO_CURSOR_MAX.
 */
#define CURSOR_BIND_HEX 8

static void cursor_bind(const char *prefix, size_t plen, char out[CURSOR_BIND_HEX + 1])
{
    snprintf(out, CURSOR_BIND_HEX + 1, "%08x", (unsigned)(XXH3_64bits(prefix, plen) >> 32));
}

typedef int (*emit_fn)(void *ctx, const char *suffix, size_t slen, const char *val,
                       size_t vlen);
/* Whether a key is listed at all; one that is not is neither counted nor a cursor. */
typedef bool (*keep_fn)(void *ctx, const char *suffix, size_t slen);

static int cursor_decode(char tag, const char *prefix, size_t plen, const char *after,
                         char *suffix, size_t *slen)
{
    size_t alen = strlen(after), head = 1 + CURSOR_BIND_HEX;
    char bind[CURSOR_BIND_HEX + 1];
    cursor_bind(prefix, plen, bind);
    if (alen < head + 2 || alen >= REPO_CURSOR_MAX || after[0] != tag || (alen - head) % 2 != 0 ||
        memcmp(after + 1, bind, CURSOR_BIND_HEX) != 0)
        return ARCA_E_INVALID;
    *slen = (alen - head) / 2;
    if (hex_decode(after + head, alen - head, (uint8_t *)suffix, *slen) != 0)
        return ARCA_E_INVALID;
    /* Version suffixes start with 8 binary bytes; every other suffix is a plain segment. */
    size_t text = tag == 'v' ? 8 : 0;
    if (*slen <= text || memchr(suffix + text, '\0', *slen - text))
        return ARCA_E_INVALID;
    return 0;
}

static int list_walk(repo_db *db, enum repo_cf cf, const char *prefix, size_t plen, char tag,
                     const char *after, size_t limit, keep_fn keep, emit_fn emit, void *ctx,
                     char *next)
{
    int rc = 0;
    char seek[KEY_MAX], last[KEY_MAX];
    size_t seeklen = plen, lastlen = 0, count = 0;
    bool more = false;
    rocksdb_iterator_t *it = NULL;
    char *err = NULL;

    next[0] = '\0';
    memcpy(seek, prefix, plen);
    if (after && after[0]) {
        size_t slen;
        if (strlen(after) / 2 > KEY_MAX - plen ||
            (rc = cursor_decode(tag, prefix, plen, after, seek + plen, &slen)) != 0) {
            rc = ARCA_E_INVALID;
            goto out;
        }
        seeklen += slen;
        memcpy(last, seek + plen, slen);
        lastlen = slen;
    }
    it = rocksdb_create_iterator_cf(db->db, db->ropts, db->cf[cf]);
    rocksdb_iter_seek(it, seek, seeklen);
    if (seeklen > plen && rocksdb_iter_valid(it)) {
        size_t kl;
        const char *k = rocksdb_iter_key(it, &kl);
        if (kl == seeklen && memcmp(k, seek, kl) == 0)
            rocksdb_iter_next(it);
    }
    for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl);
        if (kl < plen || memcmp(k, prefix, plen) != 0)
            break;
        if (kl - plen >= KEY_MAX || kl == plen)
            continue; /* cannot be a key we wrote */
        if (keep && !keep(ctx, k + plen, kl - plen))
            continue;
        if (count == limit) {
            more = true;
            break;
        }
        const char *v = rocksdb_iter_value(it, &vl);
        lastlen = kl - plen;
        memcpy(last, k + plen, lastlen);
        count++;
        if ((rc = emit(ctx, last, lastlen, v, vl)) != 0)
            goto out;
    }
    rocksdb_iter_get_error(it, &err);
    if (err) {
        rc = db_error("iterate", err);
        goto out;
    }
    if (more && lastlen > 0 && 1 + CURSOR_BIND_HEX + 2 * lastlen < REPO_CURSOR_MAX) {
        next[0] = tag;
        cursor_bind(prefix, plen, next + 1);
        hex_encode((const uint8_t *)last, lastlen, next + 1 + CURSOR_BIND_HEX);
    }
out:
    if (it)
        rocksdb_iter_destroy(it);
    return rc;
}

/* Copies a key suffix into a NUL-terminated buffer; false when it cannot fit. */
static bool suffix_str(char *buf, size_t cap, const char *s, size_t len)
{
    if (len >= cap)
        return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    return true;
}

struct repos_ctx {
    int (*cb)(void *arg, const struct repo_entry *e);
    bool (*want)(void *arg, const char *repo);
    void *arg;
};

static bool keep_repo(void *vctx, const char *s, size_t slen)
{
    struct repos_ctx *ctx = vctx;
    char name[COORD_REPO_MAX + 1];
    /* A key that does not decode is kept, so that emit_repo reports it. */
    return !ctx->want || !suffix_str(name, sizeof(name), s, slen) || ctx->want(ctx->arg, name);
}

static int emit_repo(void *vctx, const char *s, size_t slen, const char *v, size_t vlen)
{
    struct repos_ctx *ctx = vctx;
    char name[COORD_REPO_MAX + 1];
    struct repo_entry e = {.repo = name};
    if (!suffix_str(name, sizeof(name), s, slen) || rec_created_decode(v, vlen, &e.created_ms))
        return ARCA_E_DB;
    return ctx->cb(ctx->arg, &e);
}

int repo_list_repos(repo_db *db, const char *after, size_t limit,
                    bool (*want)(void *arg, const char *repo),
                    int (*cb)(void *arg, const struct repo_entry *e), void *arg, char *next)
{
    struct repos_ctx ctx = {cb, want, arg};
    return list_walk(db, CF_REPOS, "", 0, 'r', after, limit, keep_repo, emit_repo, &ctx, next);
}

struct names_ctx {
    int (*cb)(void *arg, const struct name_entry *e);
    void *arg;
};

static int emit_name(void *vctx, const char *s, size_t slen, const char *v, size_t vlen)
{
    struct names_ctx *ctx = vctx;
    char name[COORD_SEGMENT_MAX + 1];
    struct name_entry e = {.name = name};
    if (!suffix_str(name, sizeof(name), s, slen) || rec_created_decode(v, vlen, &e.created_ms))
        return ARCA_E_DB;
    return ctx->cb(ctx->arg, &e);
}

int repo_list_names(repo_db *db, const char *repo, const char *after, size_t limit,
                    int (*cb)(void *arg, const struct name_entry *e), void *arg, char *next)
{
    const char *why;
    char prefix[KEY_MAX];
    struct names_ctx ctx = {cb, arg};
    next[0] = '\0';
    if (!repo || coord_repo_check(repo, strlen(repo), &why) != 0)
        return ARCA_E_INVALID;
    size_t plen = key_make(prefix, true, repo, NULL, NULL, NULL);
    return list_walk(db, CF_NAMES, prefix, plen, 'n', after, limit, NULL, emit_name, &ctx, next);
}

struct versions_ctx {
    int (*cb)(void *arg, const struct version_entry *e);
    void *arg;
};

static int emit_version(void *vctx, const char *s, size_t slen, const char *v, size_t vlen)
{
    struct versions_ctx *ctx = vctx;
    char version[COORD_SEGMENT_MAX + 1];
    struct version_state st;
    struct version_entry e = {.version = version, .st = &st};
    if (slen <= 8 || !suffix_str(version, sizeof(version), s + 8, slen - 8) ||
        rec_vstate_decode(v, vlen, &st))
        return ARCA_E_DB;
    return ctx->cb(ctx->arg, &e);
}

int repo_list_versions(repo_db *db, const char *repo, const char *name, const char *after,
                       size_t limit, int (*cb)(void *arg, const struct version_entry *e),
                       void *arg, char *next)
{
    struct coord c;
    const char *why;
    char prefix[KEY_MAX];
    struct versions_ctx ctx = {cb, arg};
    next[0] = '\0';
    if (coord_set(&c, repo, name, "x", NULL, &why) != 0)
        return ARCA_E_INVALID;
    size_t plen = key_make(prefix, true, repo, name, NULL, NULL);
    return list_walk(db, CF_VTIME, prefix, plen, 'v', after, limit, NULL, emit_version, &ctx, next);
}

struct files_ctx {
    int (*cb)(void *arg, const struct artifact *a);
    void *arg;
    struct artifact a;
};

static int emit_file(void *vctx, const char *s, size_t slen, const char *v, size_t vlen)
{
    struct files_ctx *ctx = vctx;
    struct artifact *a = &ctx->a;
    if (!suffix_str(a->coord.path, sizeof(a->coord.path), s, slen) ||
        rec_artifact_decode(v, vlen, a))
        return ARCA_E_DB;
    return ctx->cb(ctx->arg, a);
}

int repo_list_files(repo_db *db, const char *repo, const char *name, const char *version,
                    const char *after, size_t limit,
                    int (*cb)(void *arg, const struct artifact *a), void *arg, char *next)
{
    const char *why;
    char prefix[KEY_MAX];
    struct files_ctx ctx = {.cb = cb, .arg = arg};
    next[0] = '\0';
    if (coord_set(&ctx.a.coord, repo, name, version, NULL, &why) != 0)
        return ARCA_E_INVALID;
    size_t plen = key_make(prefix, true, repo, name, version, NULL);
    return list_walk(db, CF_ARTIFACTS, prefix, plen, 'f', after, limit, NULL, emit_file, &ctx, next);
}

int repo_walk_blobs(repo_db *db,
                    int (*cb)(void *arg, const struct blob_digests *dig,
                              const struct blob_blocks *blocks),
                    void *arg)
{
    int rc = 0;
    char *err = NULL;
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db->db, db->ropts, db->cf[CF_BLOBS]);
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl);
        const char *v = rocksdb_iter_value(it, &vl);
        struct blob_digests dig;
        struct blob_blocks blocks = {0};
        if (kl != 32) {
            LOG_E("index: malformed blob key");
            rc = ARCA_E_DB;
            goto out;
        }
        memcpy(dig.sha256, k, 32);
        if ((rc = rec_blob_decode(v, vl, &dig, &blocks)) != 0)
            goto out;
        rc = cb(arg, &dig, &blocks);
        blob_blocks_cleanup(&blocks);
        if (rc != 0)
            goto out;
    }
    rocksdb_iter_get_error(it, &err);
    if (err)
        rc = db_error("iterate", err);
out:
    rocksdb_iter_destroy(it);
    return rc;
}

/* ---- tokens ----------------------------------------------------------- */

char *rec_token_encode(const struct token *t, size_t *len)
{
    json_t *scopes = json_array();
    for (size_t i = 0; i < t->nscopes; i++)
        json_array_append_new(scopes, json_string(t->scopes[i]));
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:o}", "id", t->id, "name", t->name,
                          "owner", t->owner, "created_by", t->created_by, "created_ms",
                          (json_int_t)t->created_ms, "expires_ms", (json_int_t)t->expires_ms,
                          "revoked_ms", (json_int_t)t->revoked_ms, "scopes", scopes);
    char *text = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(o);
    if (text)
        *len = strlen(text);
    return text;
}

static int copy_str(char *dst, size_t cap, json_t *v)
{
    const char *s = json_string_value(v);
    if (!s || strlen(s) >= cap)
        return ARCA_E_DB;
    memcpy(dst, s, strlen(s) + 1);
    return 0;
}

int rec_token_decode(const char *v, size_t len, struct token *t)
{
    json_error_t jerr;
    int rc = ARCA_E_DB;
    json_t *o = json_loadb(v, len, 0, &jerr);
    memset(t, 0, sizeof(*t));
    if (!o)
        goto out;
    json_t *scopes = json_object_get(o, "scopes");
    if (copy_str(t->id, sizeof(t->id), json_object_get(o, "id")) ||
        copy_str(t->name, sizeof(t->name), json_object_get(o, "name")) ||
        copy_str(t->owner, sizeof(t->owner), json_object_get(o, "owner")) ||
        copy_str(t->created_by, sizeof(t->created_by), json_object_get(o, "created_by")) ||
        !json_is_array(scopes) || json_array_size(scopes) > TOKEN_SCOPES_MAX)
        goto out;
    t->created_ms = (uint64_t)json_integer_value(json_object_get(o, "created_ms"));
    t->expires_ms = (uint64_t)json_integer_value(json_object_get(o, "expires_ms"));
    t->revoked_ms = (uint64_t)json_integer_value(json_object_get(o, "revoked_ms"));
    for (size_t i = 0; i < json_array_size(scopes); i++)
        if (copy_str(t->scopes[i], sizeof(t->scopes[i]), json_array_get(scopes, i)))
            goto out;
    t->nscopes = json_array_size(scopes);
    rc = 0;
out:
    if (rc != 0)
        LOG_E("index: a token record does not decode");
    json_decref(o);
    return rc;
}

static bool token_id_ok(const char *id)
{
    size_t n = strlen(id);
    return n == TOKEN_ID_LEN && strspn(id, "0123456789abcdef") == n;
}

static void token_load_used(repo_db *db, struct token *t)
{
    char *v = NULL;
    size_t vlen = 0;
    if (db_get(db, CF_TOKEN_USED, t->id, strlen(t->id), &v, &vlen) == 0 && vlen == 8)
        t->last_used_ms = get_be64((const uint8_t *)v);
    rocksdb_free(v);
}

static int token_get(repo_db *db, const char *id, struct token *out, bool with_used)
{
    char *v = NULL;
    size_t vlen = 0;
    if (!token_id_ok(id))
        return ARCA_E_NOTFOUND;
    int rc = db_get(db, CF_TOKENS, id, strlen(id), &v, &vlen);
    if (rc == 0)
        rc = rec_token_decode(v, vlen, out);
    rocksdb_free(v);
    if (rc == 0 && with_used)
        token_load_used(db, out);
    return rc;
}

int repo_token_get(repo_db *db, const char *id, struct token *out)
{
    return token_get(db, id, out, true);
}

uint64_t repo_token_generation(repo_db *db)
{
    return atomic_load(&db->token_gen);
}

int repo_token_find(repo_db *db, const uint8_t secret_hash[32], struct token *out)
{
    char *v = NULL, id[TOKEN_ID_LEN + 1];
    size_t vlen = 0;
    int rc = db_get(db, CF_TOKEN_HASH, (const char *)secret_hash, 32, &v, &vlen);
    if (rc != 0)
        return rc;
    if (vlen != TOKEN_ID_LEN) {
        rocksdb_free(v);
        return ARCA_E_DB;
    }
    memcpy(id, v, vlen);
    id[vlen] = '\0';
    rocksdb_free(v);
    return token_get(db, id, out, false);
}

struct tokens_ctx {
    repo_db *db;
    int (*cb)(void *arg, const struct token *t);
    void *arg;
};

static int emit_token(void *vctx, const char *s, size_t slen, const char *v, size_t vlen)
{
    struct tokens_ctx *ctx = vctx;
    struct token t;
    if (rec_token_decode(v, vlen, &t) != 0)
        return ARCA_E_DB;
    token_load_used(ctx->db, &t);
    return ctx->cb(ctx->arg, &t);
}

int repo_token_list(repo_db *db, const char *after, size_t limit,
                    int (*cb)(void *arg, const struct token *t), void *arg, char *next)
{
    struct tokens_ctx ctx = {db, cb, arg};
    return list_walk(db, CF_TOKENS, "", 0, 't', after, limit, NULL, emit_token, &ctx, next);
}

int repo_token_touch(repo_db *db, const char *id, uint64_t when_ms)
{
    char *err = NULL;
    uint8_t v[8];
    if (db->readonly || !token_id_ok(id))
        return ARCA_E_INVALID;
    put_be64(v, when_ms);
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create(); /* unsynced: a hint, not a record */
    rocksdb_put_cf(db->db, wo, db->cf[CF_TOKEN_USED], id, strlen(id), (const char *)v, 8, &err);
    rocksdb_writeoptions_destroy(wo);
    return err ? db_error("token touch", err) : 0;
}
