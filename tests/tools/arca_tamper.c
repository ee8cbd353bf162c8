/*
 * arca_tamper: a test-only tool that rewrites arcad's event log behind its
 * back, the way an intruder with file access would, so that end-to-end tests
 * can check that `arcad audit verify` and GET /api/v1/audit/verify notice.
 * It opens DATA/index with every column family it has, with raw RocksDB
 * calls and nothing of arca's.  Never installed.
 *
 *   arca_tamper DATA alter SEQ     change one character of event SEQ's details
 *   arca_tamper DATA delete SEQ    delete event SEQ
 *   arca_tamper DATA swap A B      exchange the records of events A and B
 *   arca_tamper DATA set CF KEYHEX VALUE   write one record of any column family
 *                                  (the key in hex, the value as given), as
 *                                  damage replication never sees (an event
 *                                  nobody logged): `arcad replication verify`
 *                                  must name that key
 *   arca_tamper DATA unset CF KEYHEX       delete one record of any column family
 *
 * Stop arcad first (RocksDB allows one writer).  Exit 0 done, 1 failed, 2 usage.
 */
#include <rocksdb/c.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct db {
    rocksdb_t *db;
    rocksdb_options_t *opts;
    rocksdb_writeoptions_t *wo;
    rocksdb_readoptions_t *ro;
    rocksdb_column_family_handle_t **handles;
    char **names;
    size_t n;
    rocksdb_column_family_handle_t *events;
};

static void key_of(uint64_t seq, char key[8])
{
    for (int i = 7; i >= 0; i--) {
        key[i] = (char)(seq & 0xff);
        seq >>= 8;
    }
}

static int db_open(const char *data, struct db *d)
{
    char path[4096], *err = NULL;
    char **names = NULL;
    size_t n = 0;
    snprintf(path, sizeof(path), "%s/index", data);
    d->opts = rocksdb_options_create();
    d->wo = rocksdb_writeoptions_create();
    d->ro = rocksdb_readoptions_create();
    rocksdb_writeoptions_set_sync(d->wo, 1);
    names = rocksdb_list_column_families(d->opts, path, &n, &err);
    if (err) {
        fprintf(stderr, "arca_tamper: %s: %s\n", path, err);
        rocksdb_free(err);
        return 1;
    }
    const rocksdb_options_t **opts = calloc(n, sizeof(*opts));
    d->handles = calloc(n, sizeof(*d->handles));
    for (size_t i = 0; i < n; i++)
        opts[i] = d->opts;
    d->db = rocksdb_open_column_families(d->opts, path, (int)n, (const char *const *)names, opts,
                                         d->handles, &err);
    free(opts);
    if (err) {
        fprintf(stderr, "arca_tamper: open %s: %s (is arcad still running?)\n", path, err);
        rocksdb_free(err);
        rocksdb_list_column_families_destroy(names, n);
        return 1;
    }
    d->n = n;
    d->names = names;
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], "events") == 0)
            d->events = d->handles[i];
    if (!d->events) {
        fprintf(stderr, "arca_tamper: %s has no events column family\n", path);
        return 1;
    }
    return 0;
}

static void db_close(struct db *d)
{
    for (size_t i = 0; i < d->n; i++)
        rocksdb_column_family_handle_destroy(d->handles[i]);
    free(d->handles);
    if (d->names)
        rocksdb_list_column_families_destroy(d->names, d->n);
    if (d->db)
        rocksdb_close(d->db);
    rocksdb_readoptions_destroy(d->ro);
    rocksdb_writeoptions_destroy(d->wo);
    rocksdb_options_destroy(d->opts);
}

/* Reads event seq as a NUL-terminated malloc'd string, or NULL (reported). */
static char *get_event(struct db *d, uint64_t seq)
{
    char key[8], *err = NULL;
    size_t len = 0;
    key_of(seq, key);
    char *v = rocksdb_get_cf(d->db, d->ro, d->events, key, 8, &len, &err);
    if (err || !v) {
        fprintf(stderr, "arca_tamper: no event %llu%s%s\n", (unsigned long long)seq,
                err ? ": " : "", err ? err : "");
        rocksdb_free(err);
        rocksdb_free(v);
        return NULL;
    }
    char *s = malloc(len + 1);
    memcpy(s, v, len);
    s[len] = '\0';
    rocksdb_free(v);
    return s;
}

static int put_event(struct db *d, uint64_t seq, const char *text)
{
    char key[8], *err = NULL;
    key_of(seq, key);
    rocksdb_put_cf(d->db, d->wo, d->events, key, 8, text, strlen(text), &err);
    if (err) {
        fprintf(stderr, "arca_tamper: put: %s\n", err);
        rocksdb_free(err);
        return 1;
    }
    return 0;
}

static int parse_seq(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *end || s[0] == '-' || v == 0)
        return 1;
    *out = v;
    return 0;
}

/* `set CF KEYHEX VALUE` and `unset CF KEYHEX`: one record of any column family. */
static int set_record(const char *data, const char *op, const char *cf, const char *keyhex,
                      const char *value)
{
    struct db d = {0};
    rocksdb_column_family_handle_t *h = NULL;
    size_t klen = strlen(keyhex) / 2;
    char *key = malloc(klen + 1), *err = NULL;
    int rc = 1;
    for (size_t i = 0; key && i < klen; i++) {
        unsigned v;
        if (sscanf(keyhex + 2 * i, "%2x", &v) != 1) {
            free(key);
            key = NULL;
            break;
        }
        key[i] = (char)v;
    }
    if (!key || strlen(keyhex) % 2 != 0) {
        fprintf(stderr, "arca_tamper: the key is given in hex\n");
        free(key);
        return 2;
    }
    if (db_open(data, &d) != 0)
        goto out;
    for (size_t i = 0; i < d.n; i++)
        if (strcmp(d.names[i], cf) == 0)
            h = d.handles[i];
    if (!h) {
        fprintf(stderr, "arca_tamper: no column family '%s'\n", cf);
        goto out;
    }
    if (value)
        rocksdb_put_cf(d.db, d.wo, h, key, klen, value, strlen(value), &err);
    else
        rocksdb_delete_cf(d.db, d.wo, h, key, klen, &err);
    if (err) {
        fprintf(stderr, "arca_tamper: %s: %s\n", op, err);
        rocksdb_free(err);
        goto out;
    }
    rc = 0;
out:
    db_close(&d);
    free(key);
    return rc;
}

int main(int argc, char **argv)
{
    struct db d = {0};
    uint64_t a = 0, b = 0;
    int rc = 1;
    if (argc == 6 && strcmp(argv[2], "set") == 0)
        return set_record(argv[1], argv[2], argv[3], argv[4], argv[5]);
    if (argc == 5 && strcmp(argv[2], "unset") == 0)
        return set_record(argv[1], argv[2], argv[3], argv[4], NULL);
    if (argc < 4 || parse_seq(argv[3], &a) ||
        (strcmp(argv[2], "swap") == 0 && (argc != 5 || parse_seq(argv[4], &b))) ||
        (strcmp(argv[2], "swap") != 0 && argc != 4)) {
        fprintf(stderr, "usage: arca_tamper DATA alter SEQ | delete SEQ | swap A B | "
                        "set CF KEYHEX VALUE | unset CF KEYHEX\n");
        return 2;
    }
    if (db_open(argv[1], &d) != 0)
        goto out;
    if (strcmp(argv[2], "alter") == 0) {
        char *text = get_event(&d, a);
        char *details = text ? strstr(text, "\"details\":{") : NULL;
        char *value = details ? strstr(details, ":\"") : NULL;
        if (!value || !value[2] || value[2] == '"') {
            fprintf(stderr, "arca_tamper: event %llu has no string in its details\n",
                    (unsigned long long)a);
            free(text);
            goto out;
        }
        value[2] = value[2] == 'a' ? 'b' : 'a';
        rc = put_event(&d, a, text);
        free(text);
    } else if (strcmp(argv[2], "delete") == 0) {
        char key[8], *err = NULL;
        char *text = get_event(&d, a);
        if (!text)
            goto out;
        free(text);
        key_of(a, key);
        rocksdb_delete_cf(d.db, d.wo, d.events, key, 8, &err);
        if (err) {
            fprintf(stderr, "arca_tamper: delete: %s\n", err);
            rocksdb_free(err);
            goto out;
        }
        rc = 0;
    } else if (strcmp(argv[2], "swap") == 0) {
        char *ta = get_event(&d, a), *tb = get_event(&d, b);
        rc = ta && tb && put_event(&d, a, tb) == 0 && put_event(&d, b, ta) == 0 ? 0 : 1;
        free(ta);
        free(tb);
    } else {
        fprintf(stderr, "arca_tamper: unknown operation '%s' (alter, delete, swap)\n", argv[2]);
        rc = 2;
    }
out:
    db_close(&d);
    return rc;
}
