/*
 * How much of the log is uploads: a sparse running total in CF_META, one
 * record per artifact.put event, "pc/" + BE64(seq) -> BE64(uploads so far)
 * BE64(bytes so far), written in the event's batch.  A peer asks how many
 * uploads (and bytes) its log holds after a seq with one seek, to show a
 * puller's backlog of blobs without reading the backlog.  Local bookkeeping:
 * not replicated, not in the state digest.
 */
#include "arca_err.h"
#include "repo_int.h"
#include "util.h"

#include <string.h>

#define PC_PREFIX "pc/"
#define PC_KEY_LEN (sizeof(PC_PREFIX) - 1 + 8)

static void pc_key(uint64_t seq, char key[PC_KEY_LEN])
{
    memcpy(key, PC_PREFIX, sizeof(PC_PREFIX) - 1);
    put_be64((uint8_t *)key + sizeof(PC_PREFIX) - 1, seq);
}

/* The running totals at the last upload at or before seq (0, 0 when none). */
static int totals_at(repo_db *db, uint64_t seq, uint64_t *count, uint64_t *bytes)
{
    char key[PC_KEY_LEN], *err = NULL;
    int rc = 0;
    *count = *bytes = 0;
    pc_key(seq, key);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db->db, db->ropts, db->cf[CF_META]);
    rocksdb_iter_seek_for_prev(it, key, PC_KEY_LEN);
    if (rocksdb_iter_valid(it)) {
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl);
        const char *v = rocksdb_iter_value(it, &vl);
        if (kl == PC_KEY_LEN && memcmp(k, PC_PREFIX, sizeof(PC_PREFIX) - 1) == 0 && vl == 16) {
            *count = get_be64((const uint8_t *)v);
            *bytes = get_be64((const uint8_t *)v + 8);
        }
    }
    rocksdb_iter_get_error(it, &err);
    if (err)
        rc = db_error("upload totals", err);
    rocksdb_iter_destroy(it);
    return rc;
}

int puts_load(repo_db *db)
{
    return totals_at(db, UINT64_MAX, &db->put_count, &db->put_bytes);
}

void puts_stage(repo_db *db, rocksdb_writebatch_t *b, uint64_t seq, uint64_t size)
{
    char key[PC_KEY_LEN];
    uint8_t v[16];
    pc_key(seq, key);
    put_be64(v, db->put_count + 1);
    put_be64(v + 8, db->put_bytes + size);
    rocksdb_writebatch_put_cf(b, db->cf[CF_META], key, PC_KEY_LEN, (const char *)v, 16);
}

void puts_commit(repo_db *db, uint64_t size)
{
    db->put_count++;
    db->put_bytes += size;
}

int repo_puts_after(repo_db *db, uint64_t after, uint64_t *count, uint64_t *bytes)
{
    uint64_t c0, b0;
    int rc = totals_at(db, after, &c0, &b0);
    *count = *bytes = 0;
    if (rc != 0)
        return rc;
    pthread_mutex_lock(&db->apply_mu);
    uint64_t c1 = db->put_count, b1 = db->put_bytes;
    pthread_mutex_unlock(&db->apply_mu);
    /* A log from before these totals existed counts its old uploads as none. */
    *count = c1 > c0 ? c1 - c0 : 0;
    *bytes = b1 > b0 ? b1 - b0 : 0;
    return 0;
}
