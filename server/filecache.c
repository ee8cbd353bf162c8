/* A worker's cache of small files' bytes, checked against the file by stat. */
#include "filecache.h"

#include <stdlib.h>
#include <string.h>

struct fc_entry {
    uint8_t key[32];
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime, ctime;
    struct fc_entry *hnext;         /* bucket chain */
    struct fc_entry *older, *newer; /* recency list */
    size_t len;
    unsigned char data[];
};

struct file_cache {
    struct fc_entry **buckets;
    size_t mask;
    struct fc_entry *newest, *oldest;
    size_t budget, bytes, entries;
};

/* Memory an entry is charged for: its bytes and its header. */
static size_t charge(size_t len)
{
    return sizeof(struct fc_entry) + len;
}

struct file_cache *file_cache_new(size_t budget)
{
    if (budget == 0)
        return NULL;
    struct file_cache *fc = calloc(1, sizeof(*fc));
    if (!fc)
        return NULL;
    size_t n = 64;
    while (n < budget / 4096 && n < 65536)
        n *= 2;
    fc->buckets = calloc(n, sizeof(*fc->buckets));
    if (!fc->buckets) {
        free(fc);
        return NULL;
    }
    fc->mask = n - 1;
    fc->budget = budget;
    return fc;
}

void file_cache_free(struct file_cache *fc)
{
    if (!fc)
        return;
    struct fc_entry *e = fc->newest;
    while (e) {
        struct fc_entry *next = e->older;
        free(e);
        e = next;
    }
    free(fc->buckets);
    free(fc);
}

static struct fc_entry **slot_of(struct file_cache *fc, const uint8_t key[32])
{
    uint64_t h;
    memcpy(&h, key, sizeof(h)); /* a SHA-256: its bytes are already uniform */
    struct fc_entry **p = &fc->buckets[h & fc->mask];
    while (*p && memcmp((*p)->key, key, 32) != 0)
        p = &(*p)->hnext;
    return p;
}

static void list_unlink(struct file_cache *fc, struct fc_entry *e)
{
    if (e->newer)
        e->newer->older = e->older;
    else
        fc->newest = e->older;
    if (e->older)
        e->older->newer = e->newer;
    else
        fc->oldest = e->newer;
    e->older = e->newer = NULL;
}

static void list_push(struct file_cache *fc, struct fc_entry *e)
{
    e->older = fc->newest;
    e->newer = NULL;
    if (fc->newest)
        fc->newest->newer = e;
    fc->newest = e;
    if (!fc->oldest)
        fc->oldest = e;
}

/* Removes the entry *slot points at. */
static void drop(struct file_cache *fc, struct fc_entry **slot)
{
    struct fc_entry *e = *slot;
    *slot = e->hnext;
    list_unlink(fc, e);
    fc->bytes -= charge(e->len);
    fc->entries--;
    free(e);
}

static bool same_time(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

const void *file_cache_get(struct file_cache *fc, const uint8_t key[32], const char *path,
                           size_t *len)
{
    if (!fc)
        return NULL;
    struct fc_entry **slot = slot_of(fc, key);
    struct fc_entry *e = *slot;
    if (!e)
        return NULL;
    struct stat st;
    if (stat(path, &st) != 0 || st.st_dev != e->dev || st.st_ino != e->ino ||
        st.st_size != e->size || !same_time(&st.st_mtim, &e->mtime) ||
        !same_time(&st.st_ctim, &e->ctime)) {
        drop(fc, slot);
        return NULL;
    }
    if (fc->newest != e) {
        list_unlink(fc, e);
        list_push(fc, e);
    }
    *len = e->len;
    return e->data;
}

bool file_cache_put(struct file_cache *fc, const uint8_t key[32], const struct stat *st,
                    const void *data, size_t len, uint64_t now_ns)
{
    if (!fc || len > FILE_CACHE_ENTRY_MAX || charge(len) > fc->budget ||
        (uint64_t)st->st_size != len)
        return false;
    uint64_t ctime_ns = (uint64_t)st->st_ctim.tv_sec * 1000000000ull + (uint64_t)st->st_ctim.tv_nsec;
    if (st->st_ctim.tv_sec < 0 || ctime_ns + FILE_CACHE_SETTLE_NS > now_ns)
        return false;
    struct fc_entry **slot = slot_of(fc, key);
    if (*slot)
        drop(fc, slot);
    while (fc->bytes + charge(len) > fc->budget && fc->oldest)
        drop(fc, slot_of(fc, fc->oldest->key));
    struct fc_entry *e = malloc(sizeof(*e) + len);
    if (!e)
        return false;
    memcpy(e->key, key, 32);
    e->dev = st->st_dev;
    e->ino = st->st_ino;
    e->size = st->st_size;
    e->mtime = st->st_mtim;
    e->ctime = st->st_ctim;
    e->len = len;
    memcpy(e->data, data, len);
    slot = slot_of(fc, key); /* evictions may have moved the chain */
    e->hnext = *slot;
    *slot = e;
    list_push(fc, e);
    fc->bytes += charge(len);
    fc->entries++;
    return true;
}

void file_cache_stats(const struct file_cache *fc, struct file_cache_stats *out)
{
    out->entries = fc ? fc->entries : 0;
    out->bytes = fc ? fc->bytes : 0;
}
