/*
 * A worker's cache of small files' bytes, so that a hot small artifact is
 * answered from memory: no open, read, checksum check or close per GET.
 *
 * An entry holds a whole file (at most FILE_CACHE_ENTRY_MAX bytes), already
 * read and verified by the caller, and the identity of the file it came from:
 * device, inode, size, mtime and ctime.  A lookup stats the path and answers
 * only while the file there is still that same, unchanged file; a file that
 * was removed, replaced or written to since is dropped from the cache, and
 * the caller goes to the disk (and finds it missing or damaged there).
 *
 * Only files whose ctime is at least FILE_CACHE_SETTLE_NS old may be cached:
 * with coarse file-system timestamps, a change in the same clock tick as the
 * file's last one could otherwise leave its ctime unchanged.
 *
 * Least recently used entries make room for new ones within the byte budget.
 * One thread uses a cache (no locks).
 */
#ifndef ARCA_FILECACHE_H
#define ARCA_FILECACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#define FILE_CACHE_ENTRY_MAX (64u * 1024)
#define FILE_CACHE_SETTLE_NS (2ull * 1000 * 1000 * 1000)

struct file_cache;

/* A cache holding at most budget bytes of file contents; NULL on ENOMEM or a budget of 0. */
struct file_cache *file_cache_new(size_t budget);
void file_cache_free(struct file_cache *fc);

/*
 * The bytes cached under key (*len of them) while the file at path is still
 * the one they were read from; NULL when not cached, or stale (then dropped).
 * The pointer stays valid until the next file_cache_put.
 */
const void *file_cache_get(struct file_cache *fc, const uint8_t key[32], const char *path,
                           size_t *len);

/*
 * Keeps a copy of len bytes, the whole content of the file st describes,
 * under key (replacing what key held).  now_ns: the wall clock
 * (CLOCK_REALTIME), to tell whether st's ctime has settled.  False when not
 * kept: too big, too recent, or no memory.
 */
bool file_cache_put(struct file_cache *fc, const uint8_t key[32], const struct stat *st,
                    const void *data, size_t len, uint64_t now_ns);

struct file_cache_stats {
    uint64_t entries, bytes;
};
void file_cache_stats(const struct file_cache *fc, struct file_cache_stats *out);

#endif
