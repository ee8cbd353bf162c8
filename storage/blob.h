/*
 * The blob store: content-addressed files under <dir>/<aa>/<sha256 hex>, <aa>
 * the first two hex digits (256 shard directories, made by the first writable
 * open; stores from before the <dir>/LAYOUT file, with a second level
 * <aa>/<bb>/, are moved to this layout by a writable open).
 *
 * A blob is written through a blob_writer: bytes stream into a temp file in
 * <dir>/tmp while SHA-256, SHA-1, MD5 and an xxh3-64 checksum of every
 * BLOB_BLOCK_SIZE block are computed.  blob_writer_finish() fsyncs the temp
 * file; blob_writer_commit() renames it to its content address (or, when that
 * content is already stored, discards the temp file: identical content is
 * stored once) and fsyncs the directory.  Only after commit may the index name
 * the blob.  A crash at any point leaves at most a temp file, which
 * blob_store_open() removes.
 *
 * Block checksums let a download or a scrub verify a blob block by block at
 * xxh3 speed; SHA-256 stays the identity.
 *
 * Thread safety: a blob_store may be used from any number of threads.  One
 * blob_writer is used by one thread at a time, except that blob_writer_md5(),
 * blob_writer_hash() and blob_writer_store() may run at the same time on three
 * threads (they touch disjoint state): the slowest hash, the other hashes and
 * the disk write each run beside the others.
 *
 * A new blob's writer (blob_writer_new) writes its file with O_DIRECT from the
 * first 4 KiB boundary in the write that brings it to 1 MiB, from one aligned 1 MiB buffer of its own, where the file system
 * allows it; otherwise, and for resumable writers, through the page cache.
 */
#ifndef ARCA_BLOB_H
#define ARCA_BLOB_H

#include <stddef.h>
#include <stdint.h>

#define BLOB_BLOCK_SIZE (1u << 20)

struct blob_digests {
    uint8_t sha256[32];
    uint8_t sha1[20];
    uint8_t md5[16];
    uint64_t size;
};

/* xxh3-64 of each BLOB_BLOCK_SIZE block (the last may be short; an empty blob has none). */
struct blob_blocks {
    uint32_t count;
    uint64_t *sums;  /* malloc'd, owned by whoever holds the struct; free with blob_blocks_cleanup */
};

void blob_blocks_cleanup(struct blob_blocks *b);

/* xxh3-64 of a buffer: the block checksum function. */
uint64_t blob_block_sum(const void *buf, size_t len);

typedef struct blob_store blob_store;

/* Opens (creating if needed) the store rooted at dir and removes leftover temp files. */
int blob_store_open(const char *dir, blob_store **out);
/*
 * Opens an existing store without touching it (no folder creation, no temp
 * clean-up), for `arcad verify` beside a running server.  -ENOENT when absent.
 * blob_writer_new() on such a store fails with -EROFS.
 */
int blob_store_open_readonly(const char *dir, blob_store **out);
void blob_store_free(blob_store *bs);

/* Writes the blob's path for sha256 into buf; 0 or -ENAMETOOLONG. */
int blob_store_path(const blob_store *bs, const uint8_t sha256[32], char *buf, size_t buflen);

/* Opens a stored blob read-only; *fd_out is the caller's to close.  0, -ENOENT, or -errno. */
int blob_open(blob_store *bs, const uint8_t sha256[32], int *fd_out, uint64_t *size_out);

/*
 * Verifies block idx of an open blob: preads it into scratch (BLOB_BLOCK_SIZE
 * bytes, caller's) and compares its xxh3 with blocks->sums[idx].  0, or
 * ARCA_E_CORRUPT (also for a file shorter than size), or -errno.  blocks
 * NULL: only reads the block.
 */
int blob_check_block(int fd, uint64_t size, const struct blob_blocks *blocks, uint32_t idx,
                     void *scratch);

/*
 * Re-reads a whole stored blob and recomputes SHA-256 and its block sums.
 * 0 when it matches dig and blocks; -ENOENT when missing; ARCA_E_CORRUPT when
 * the size, a block or the SHA-256 differs.
 */
int blob_verify(blob_store *bs, const struct blob_digests *dig, const struct blob_blocks *blocks);

/*
 * blob_verify that also says, in why, what was wrong when it returns
 * ARCA_E_CORRUPT (the wrong size, which block, the SHA-256 found); why is
 * left empty otherwise.
 */
int blob_verify_why(blob_store *bs, const struct blob_digests *dig,
                    const struct blob_blocks *blocks, char *why, size_t why_len);

/*
 * The cheap check: re-reads a whole stored blob and compares its size and
 * every block's xxh3 with blocks (SHA-256 is left out; with no block sums it
 * is blob_verify).  Same results as blob_verify.
 */
int blob_scrub(blob_store *bs, const struct blob_digests *dig, const struct blob_blocks *blocks);

/*
 * Reads a stored blob and computes its digests and block sums (blocks: the
 * caller's, blob_blocks_cleanup), for a blob on disk the index does not name
 * yet.  0, -ENOENT, -errno, -ENOMEM, ARCA_E_CRYPTO.
 */
int blob_rehash(blob_store *bs, const uint8_t sha256[32], struct blob_digests *dig,
                struct blob_blocks *blocks);

typedef struct blob_writer blob_writer;

int blob_writer_new(blob_store *bs, blob_writer **out);
/*
 * A writer for a blob fetched from elsewhere, that survives a broken transfer:
 * it writes <dir>/partial/<sha256 hex>, whatever an earlier transfer of the
 * same blob left there being hashed again (read, not rewritten) and appended
 * to.  *have: the bytes already there (ask the source for the rest).  Freed
 * uncommitted, the file is kept for the next attempt, unless
 * blob_writer_discard() was called (e.g. the finished content did not match).
 * Commit verifies nothing by itself: compare the digests first.
 */
int blob_writer_resume(blob_store *bs, const uint8_t sha256[32], blob_writer **out,
                       uint64_t *have);
/* Removes what a broken transfer of sha256 left (blob_writer_resume's file), if anything. */
void blob_partial_remove(blob_store *bs, const uint8_t sha256[32]);
/* Calls cb for the SHA-256 of every partial transfer kept in the store.  0 or -errno. */
int blob_partial_each(blob_store *bs, void (*cb)(void *arg, const uint8_t sha256[32]), void *arg);
/* Makes blob_writer_free remove a resumable writer's file. */
void blob_writer_discard(blob_writer *w);
/* Appends len bytes: blob_writer_hash() then blob_writer_store().  0 or -errno. */
int blob_writer_write(blob_writer *w, const void *buf, size_t len);
/*
 * Feeds the next len bytes to SHA-256, SHA-1 and the block sums.  0,
 * ARCA_E_CRYPTO, -ENOMEM (block sums), or -EINVAL after finish.
 */
int blob_writer_hash(blob_writer *w, const void *buf, size_t len);
/* Writes the next len bytes to the file.  0 or -errno. */
int blob_writer_store(blob_writer *w, const void *buf, size_t len);
/* Feeds the same bytes, in the same order, to MD5.  Never fails. */
void blob_writer_md5(blob_writer *w, const void *buf, size_t len);
/*
 * Finalizes digests into dig and fdatasyncs the temp file.  0 or -errno;
 * -EINVAL when blob_writer_hash() and blob_writer_store() saw different byte
 * counts.
 */
int blob_writer_finish(blob_writer *w, struct blob_digests *dig);
/* Moves the block sums out into blocks (the writer no longer owns them); call after finish. */
void blob_writer_take_blocks(blob_writer *w, struct blob_blocks *blocks);
/*
 * Renames the finished temp file to its content address, then fsyncs the
 * directory.  If that address already holds a copy that reads back whole
 * (size and every block's xxh3 match this writer's), the temp file is dropped
 * instead; a copy that does not is replaced.  0 or -errno.
 */
int blob_writer_commit(blob_writer *w);
/* Frees the writer; an uncommitted temp file is unlinked.  NULL is a no-op. */
void blob_writer_free(blob_writer *w);

#endif
