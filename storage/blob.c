/*
 * The content-addressed blob store.  See blob.h for the contract; the
 * crash-safety argument is the write order: temp file, fdatasync, rename to
 * the content address, fsync of the directory that now names it.  Only then
 * may the index name the blob.
 */
#include "blob.h"

#include "arca_err.h"
#include "log.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

struct blob_store {
    char *dir;
    char *tmpdir;
    bool readonly; /* opened for verification beside a server: never writes */
    bool nested;   /* the layout before LAYOUT_FILE: <aa>/<bb>/<hex> (read-only opens only) */
    /* Fetched once: an implicit fetch per EVP_DigestInit_ex costs a lookup under a lock. */
    EVP_MD *md_sha256;
    EVP_MD *md_sha1;
    EVP_MD *md_md5;
};

#define BLOB_FLUSH_BYTES (8u << 20)

/*
 * Direct writes.  In the write that brings a new blob to BLOB_DIRECT_MIN
 * bytes, the writer switches its file to O_DIRECT at the first 4 KiB
 * boundary and from then on writes BLOB_STAGE_SIZE pieces from one aligned
 * buffer of its own, reused for the whole stream.  A buffered write() copies
 * every byte into a fresh page-cache page: on this project's VMs that copy
 * (copy_folio_from_iter_atomic, each new page faulted in by the host) was
 * 28% of arcad's CPU during a 1 GiB upload, more than SHA-256.  A direct
 * write hands the buffer to the disk as it is.  Small blobs stay buffered:
 * they are read back soon (the small-file cache) and a few KiB gain nothing.
 */
#define BLOB_DIRECT_ALIGN 4096u
#define BLOB_DIRECT_MIN (1u << 20)
#define BLOB_STAGE_SIZE (1u << 20)

struct blob_writer {
    blob_store *bs;
    int fd;
    char tmp_path[PATH_MAX];
    bool finished;
    bool committed;
    bool keep;  /* a resumable partial file: kept when freed uncommitted (blob_writer_resume) */
    int err; /* the first write error; a failed writer stays failed */

    /* Touched only by blob_writer_hash() and finish. */
    EVP_MD_CTX *sha256;
    EVP_MD_CTX *sha1;
    XXH3_state_t *xxh;
    uint64_t hashed;     /* bytes fed to the hashes above */
    uint32_t block_fill; /* bytes of the current block already hashed */
    uint64_t *sums;
    uint32_t nsums;
    uint32_t cap;
    int herr;            /* the first hashing error */

    /* Touched only by blob_writer_store() and finish. */
    uint64_t size;       /* bytes stored (the file, plus what waits in stage) */
    uint64_t flushed;    /* bytes before it have been handed to the disk (sync_file_range) */
    bool can_direct;     /* a new temp file: may switch to O_DIRECT */
    bool direct;         /* switched: bytes go through stage */
    uint8_t *stage;      /* BLOB_STAGE_SIZE bytes, BLOB_DIRECT_ALIGN-aligned */
    size_t stage_len;    /* bytes in stage, not yet in the file (counted in size) */

    /*
     * Touched only by blob_writer_md5() and finish, so that MD5 (the slowest
     * hash) may run on another thread beside write().
     */
    EVP_MD_CTX *md5;

    struct blob_digests dig;
};

void blob_blocks_cleanup(struct blob_blocks *b)
{
    if (!b)
        return;
    free(b->sums);
    b->sums = NULL;
    b->count = 0;
}

uint64_t blob_block_sum(const void *buf, size_t len)
{
    return XXH3_64bits(buf, len);
}

/* Removes every entry of the temp directory: after a crash they are partial uploads. */
static int clean_tmp(const char *tmpdir)
{
    int rc = 0, removed = 0;
    DIR *d = opendir(tmpdir);
    if (!d) {
        rc = -errno;
        LOG_E("blob store: cannot open %s: %s", tmpdir, strerror(errno));
        goto out;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (unlinkat(dirfd(d), de->d_name, 0) != 0) {
            LOG_W("blob store: cannot remove %s/%s: %s", tmpdir, de->d_name, strerror(errno));
            continue;
        }
        removed++;
    }
    if (removed > 0)
        LOG_I("blob store: removed %d leftover temp file(s) from %s", removed, tmpdir);
out:
    if (d)
        closedir(d);
    return rc;
}

/*
 * Shards.  A blob lives at <dir>/<aa>/<hex>, <aa> its first two hex digits:
 * 256 directories, all created when the store is first opened, so a PUT
 * never creates a directory (ext4 with dir_index keeps millions of names per
 * directory fast).  Stores written before LAYOUT_FILE existed nest a second
 * level, <aa>/<bb>/<hex>: 65,536 directories, and while a store was young
 * almost every PUT made one (a mkdir was a third of arcad's CPU in the 4 KiB
 * PUT benchmark, plus one more directory fsync per PUT).  A writable open
 * moves such blobs up a level, each with one rename, and writes LAYOUT_FILE
 * once none is left nested.  A crash part-way leaves every blob at one of the
 * two places; blob_open looks in the other place when the first has no such
 * file, so a blob is found wherever a crash, a read-only open beside a
 * migration, or an older arcad run on the directory left it.
 */
#define LAYOUT_FILE "LAYOUT"
#define LAYOUT_TEXT "arca blob store layout 2: <aa>/<sha256 hex>\n"

static bool is_hex_name(const char *s, size_t n)
{
    if (strlen(s) != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

static bool is_dir(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/*
 * Moves the blobs of shard/<sub>/ up into shard/, reading the folder again
 * until a pass finds none (readdir need not see names renamed away under
 * it).  *moved counts them.  0 or -errno (logged).
 */
static int unnest_one(const char *shard, const char *sub, unsigned *moved)
{
    char dir[PATH_MAX], from[PATH_MAX], to[PATH_MAX];
    int rc = 0;
    unsigned pass;
    int n = snprintf(dir, sizeof(dir), "%s/%s", shard, sub);
    if (n < 0 || (size_t)n >= sizeof(dir))
        return -ENAMETOOLONG;
    do {
        pass = 0;
        DIR *d = opendir(dir);
        if (!d) {
            rc = -errno;
            LOG_E("blob store: cannot read %s: %s", dir, strerror(errno));
            return rc;
        }
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (!is_hex_name(de->d_name, 64))
                continue; /* "." and "..", or not ours: left where it is */
            int nf = snprintf(from, sizeof(from), "%s/%s", dir, de->d_name);
            int nt = snprintf(to, sizeof(to), "%s/%s", shard, de->d_name);
            if (nf < 0 || (size_t)nf >= sizeof(from) || nt < 0 || (size_t)nt >= sizeof(to)) {
                rc = -ENAMETOOLONG;
                break;
            }
            /*
             * Already at the flat name: the flat copy is the one reads use (and
             * the one a re-upload may have repaired), so the nested name goes.
             * This also covers two hard links to one file (cp -l), where
             * rename() would do nothing and succeed.
             */
            struct stat st;
            if (lstat(to, &st) == 0) {
                if (unlink(from) != 0) {
                    rc = -errno;
                    LOG_E("blob store: cannot remove %s: %s", from, strerror(errno));
                    break;
                }
            } else if (rename(from, to) != 0) {
                rc = -errno;
                LOG_E("blob store: cannot move %s to %s: %s", from, to, strerror(errno));
                break;
            }
            pass++;
        }
        closedir(d);
        *moved += pass;
    } while (rc == 0 && pass > 0);
    return rc;
}

/* Moves one shard's nested blobs up; *left counts <bb> folders that still hold something. */
static int unnest_shard(const char *shard, unsigned *moved, unsigned *left)
{
    char subs[256][3], sub[PATH_MAX];
    unsigned nsub = 0;
    int rc = 0;
    DIR *d = opendir(shard);
    if (!d) {
        rc = -errno;
        LOG_E("blob store: cannot read %s: %s", shard, strerror(errno));
        return rc;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL && nsub < 256) {
        int n = snprintf(sub, sizeof(sub), "%s/%s", shard, de->d_name);
        if (is_hex_name(de->d_name, 2) && n > 0 && (size_t)n < sizeof(sub) && is_dir(sub))
            memcpy(subs[nsub++], de->d_name, 3);
    }
    closedir(d);
    if (nsub == 0)
        return 0;
    for (unsigned i = 0; i < nsub && rc == 0; i++)
        rc = unnest_one(shard, subs[i], moved);
    /* The new names first, then the emptied folders go (and that is made durable too). */
    if (rc == 0)
        rc = fs_fsync_dir(shard);
    for (unsigned i = 0; i < nsub && rc == 0; i++) {
        int n = snprintf(sub, sizeof(sub), "%s/%s", shard, subs[i]);
        if (n < 0 || (size_t)n >= sizeof(sub) || rmdir(sub) != 0) {
            LOG_W("blob store: %s still holds something after its blobs moved up: %s", sub,
                  strerror(errno));
            (*left)++;
        }
    }
    if (rc == 0)
        rc = fs_fsync_dir(shard);
    return rc;
}

/*
 * Creates the 256 shard directories (again, if one was removed), moves blobs
 * of the nested layout up a level, then writes LAYOUT_FILE.  With LAYOUT_FILE
 * present only shards that hold a sub-folder are read.
 */
static int prepare_shards(const blob_store *bs)
{
    char path[PATH_MAX], shard[PATH_MAX];
    struct stat st;
    int rc = 0;
    bool made = false;
    unsigned moved = 0, left = 0;
    int n = snprintf(path, sizeof(path), "%s/" LAYOUT_FILE, bs->dir);
    if (n < 0 || (size_t)n >= sizeof(path) - 8)
        return -ENAMETOOLONG; /* and so every shard path below fits */
    bool laid_out = stat(path, &st) == 0;
    for (unsigned a = 0; a < 256 && rc == 0; a++) {
        snprintf(shard, sizeof(shard), "%s/%02x", bs->dir, a);
        if (mkdir(shard, 0755) == 0) {
            made = true;
        } else if (errno != EEXIST || lstat(shard, &st) != 0 || !S_ISDIR(st.st_mode)) {
            rc = errno == EEXIST ? -ENOTDIR : -errno;
            LOG_E("blob store: cannot make the shard directory %s: %s", shard, strerror(-rc));
        } else if (!laid_out || st.st_nlink > 2) {
            /*
             * Moved already, yet the shard has a sub-folder (ext4, XFS and
             * tmpfs count them in st_nlink; btrfs does not, and there such
             * blobs stay where they are, found by blob_open's second look):
             * an older arcad wrote nested blobs here since.  Move them too;
             * if that fails, they are read where they are and the start goes on.
             */
            if ((rc = unnest_shard(shard, &moved, &left)) != 0 && laid_out) {
                LOG_W("blob store: cannot move the nested blobs of %s up; they are read "
                      "where they are",
                      shard);
                rc = 0;
                left++;
            }
        }
    }
    if (rc == 0 && made) {
        /* The new shard names, and on a new store the blob store's own name in its parent. */
        rc = fs_fsync_dir(bs->dir);
        char *slash = strrchr(path, '/');
        *slash = '\0';
        slash = strrchr(path, '/');
        if (rc == 0 && slash && slash != path) {
            *slash = '\0';
            rc = fs_fsync_dir(path);
        }
    }
    if (moved > 0)
        LOG_I("blob store: moved %u blob(s) from <aa>/<bb>/ to <aa>/ in %s", moved, bs->dir);
    if (rc == 0 && left == 0 && !laid_out) {
        snprintf(path, sizeof(path), "%s/" LAYOUT_FILE, bs->dir);
        rc = fs_write_atomic(path, LAYOUT_TEXT, sizeof(LAYOUT_TEXT) - 1, 0644);
    } else if (rc == 0 && left > 0) {
        LOG_W("blob store: %u nested folder(s) in %s could not be removed; the move is tried "
              "again at the next start, and their blobs are still read where they are",
              left, bs->dir);
    }
    if (rc != 0)
        LOG_E("blob store: cannot prepare the shard directories of %s: %s", bs->dir,
              strerror(-rc));
    return rc;
}

/* Opens the store; a writable open also creates its folders and clears crash leftovers. */
static int store_open(const char *dir, bool readonly, blob_store **out)
{
    int rc = 0;
    blob_store *bs = calloc(1, sizeof(*bs));
    *out = NULL;
    if (!bs) {
        rc = -ENOMEM;
        goto out;
    }
    size_t dlen = strlen(dir);
    bs->dir = strdup(dir);
    bs->tmpdir = malloc(dlen + sizeof("/tmp"));
    if (!bs->dir || !bs->tmpdir) {
        rc = -ENOMEM;
        goto out;
    }
    memcpy(bs->tmpdir, dir, dlen);
    memcpy(bs->tmpdir + dlen, "/tmp", sizeof("/tmp"));
    bs->readonly = readonly;
    if (readonly) {
        struct stat st;
        if (stat(dir, &st) != 0) {
            rc = -errno;
            goto out;
        }
        /* Not yet opened by a server that moves blobs to the flat layout: look nested first. */
        char marker[PATH_MAX];
        int n = snprintf(marker, sizeof(marker), "%s/" LAYOUT_FILE, dir);
        bs->nested = n > 0 && (size_t)n < sizeof(marker) && stat(marker, &st) != 0;
    } else {
        if ((rc = fs_mkdirs(bs->tmpdir, 0755)) != 0) {
            LOG_E("blob store: cannot create %s: %s", bs->tmpdir, strerror(-rc));
            goto out;
        }
        if ((rc = clean_tmp(bs->tmpdir)) != 0 || (rc = prepare_shards(bs)) != 0)
            goto out;
    }
    bs->md_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    bs->md_sha1 = EVP_MD_fetch(NULL, "SHA1", NULL);
    bs->md_md5 = EVP_MD_fetch(NULL, "MD5", NULL);
    if (!bs->md_sha256 || !bs->md_sha1 || !bs->md_md5) {
        LOG_E("blob store: OpenSSL lacks SHA-256, SHA-1 or MD5");
        rc = ARCA_E_CRYPTO;
        goto out;
    }
    *out = bs;
    bs = NULL;
out:
    blob_store_free(bs);
    return rc;
}

int blob_store_open(const char *dir, blob_store **out)
{
    return store_open(dir, false, out);
}

int blob_store_open_readonly(const char *dir, blob_store **out)
{
    return store_open(dir, true, out);
}

void blob_store_free(blob_store *bs)
{
    if (!bs)
        return;
    EVP_MD_free(bs->md_sha256);
    EVP_MD_free(bs->md_sha1);
    EVP_MD_free(bs->md_md5);
    free(bs->dir);
    free(bs->tmpdir);
    free(bs);
}

/* The path of sha256's blob in the flat layout, or in the nested one. */
static int layout_path(const blob_store *bs, bool nested, const uint8_t sha256[32], char *buf,
                       size_t buflen)
{
    char hex[65];
    hex_encode(sha256, 32, hex);
    int n = nested ? snprintf(buf, buflen, "%s/%.2s/%.2s/%s", bs->dir, hex, hex + 2, hex)
                   : snprintf(buf, buflen, "%s/%.2s/%s", bs->dir, hex, hex);
    if (n < 0 || (size_t)n >= buflen)
        return -ENAMETOOLONG;
    return 0;
}

int blob_store_path(const blob_store *bs, const uint8_t sha256[32], char *buf, size_t buflen)
{
    return layout_path(bs, bs->nested, sha256, buf, buflen);
}

int blob_open(blob_store *bs, const uint8_t sha256[32], int *fd_out, uint64_t *size_out)
{
    char path[PATH_MAX];
    int rc, fd = -1;
    struct stat st;
    if ((rc = blob_store_path(bs, sha256, path, sizeof(path))) != 0)
        goto out;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    /* Not there: the other layout (a move cut short, or an older arcad run here since). */
    if (fd < 0 && (errno == ENOENT || errno == ENOTDIR) &&
        layout_path(bs, !bs->nested, sha256, path, sizeof(path)) == 0)
        fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        rc = -errno;
        goto out;
    }
    *fd_out = fd;
    fd = -1;
    if (size_out)
        *size_out = (uint64_t)st.st_size;
out:
    if (fd >= 0)
        close(fd);
    return rc;
}

/* Reads up to len bytes at off, retrying short reads; returns bytes read (short only at EOF) or -errno. */
static ssize_t pread_full(int fd, void *buf, size_t len, uint64_t off)
{
    size_t got = 0;
    while (got < len) {
        ssize_t r = pread(fd, (char *)buf + got, len - got, (off_t)(off + got));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

static uint32_t block_count(uint64_t size)
{
    return (uint32_t)((size + BLOB_BLOCK_SIZE - 1) / BLOB_BLOCK_SIZE);
}

int blob_check_block(int fd, uint64_t size, const struct blob_blocks *blocks, uint32_t idx,
                     void *scratch)
{
    if (blocks ? blocks->count != block_count(size) || idx >= blocks->count
               : idx >= block_count(size))
        return ARCA_E_CORRUPT;
    uint64_t off = (uint64_t)idx * BLOB_BLOCK_SIZE;
    size_t len = size - off < BLOB_BLOCK_SIZE ? (size_t)(size - off) : BLOB_BLOCK_SIZE;
    ssize_t got = pread_full(fd, scratch, len, off);
    if (got < 0)
        return (int)got;
    if ((size_t)got != len) /* the file is shorter than the index says */
        return ARCA_E_CORRUPT;
    if (!blocks)
        return 0;
    return XXH3_64bits(scratch, len) == blocks->sums[idx] ? 0 : ARCA_E_CORRUPT;
}

/* Says in why (when not NULL) what check_blob found. */
#define WHY(...) (why ? (void)snprintf(why, why_len, __VA_ARGS__) : (void)0)

/*
 * blob_verify, and blob_scrub when sha is false (SHA-256 only without block
 * sums).  why, when not NULL, gets what was wrong for ARCA_E_CORRUPT.
 */
static int check_blob(blob_store *bs, const struct blob_digests *dig,
                      const struct blob_blocks *blocks, bool sha, char *why, size_t why_len)
{
    int rc = 0, fd = -1;
    uint64_t size = 0;
    unsigned char *buf = NULL;
    EVP_MD_CTX *ctx = NULL;
    uint8_t digest[32];
    if ((rc = blob_open(bs, dig->sha256, &fd, &size)) != 0)
        goto out;
    if (size != dig->size) {
        WHY("the wrong size: %llu bytes on disk, %llu in the index", (unsigned long long)size,
            (unsigned long long)dig->size);
        rc = ARCA_E_CORRUPT;
        goto out;
    }
    if (blocks && blocks->count != block_count(size)) {
        WHY("the index has %u block sums for %llu bytes", blocks->count,
            (unsigned long long)size);
        rc = ARCA_E_CORRUPT;
        goto out;
    }
    buf = malloc(BLOB_BLOCK_SIZE);
    ctx = EVP_MD_CTX_new();
    if (!buf || !ctx) {
        rc = -ENOMEM;
        goto out;
    }
    if (!blocks || blocks->count == 0)
        sha = true; /* nothing cheaper to check against */
    if (sha && !EVP_DigestInit_ex(ctx, bs->md_sha256, NULL)) {
        rc = ARCA_E_CRYPTO;
        goto out;
    }
    /* One pass, one block per read: the block sums and SHA-256 see the same bytes. */
    for (uint32_t idx = 0; (uint64_t)idx * BLOB_BLOCK_SIZE < size; idx++) {
        uint64_t off = (uint64_t)idx * BLOB_BLOCK_SIZE;
        size_t len = size - off < BLOB_BLOCK_SIZE ? (size_t)(size - off) : BLOB_BLOCK_SIZE;
        ssize_t got = pread_full(fd, buf, len, off);
        if (got < 0) {
            rc = (int)got;
            goto out;
        }
        if ((size_t)got != len) {
            WHY("the file ended at %llu bytes while being read; the index says %llu",
                (unsigned long long)(off + (uint64_t)got), (unsigned long long)dig->size);
            rc = ARCA_E_CORRUPT;
            goto out;
        }
        if (blocks && XXH3_64bits(buf, len) != blocks->sums[idx]) {
            WHY("block %u (bytes %llu-%llu) does not match its checksum", idx,
                (unsigned long long)off, (unsigned long long)(off + len - 1));
            rc = ARCA_E_CORRUPT;
            goto out;
        }
        if (sha && !EVP_DigestUpdate(ctx, buf, len)) {
            rc = ARCA_E_CRYPTO;
            goto out;
        }
    }
    if (sha && !EVP_DigestFinal_ex(ctx, digest, NULL)) {
        rc = ARCA_E_CRYPTO;
        goto out;
    }
    if (sha && memcmp(digest, dig->sha256, 32) != 0) {
        char hex[65];
        hex_encode(digest, 32, hex);
        WHY("the content's SHA-256 is %s", hex);
        rc = ARCA_E_CORRUPT;
    }
out:
    EVP_MD_CTX_free(ctx);
    free(buf);
    if (fd >= 0)
        close(fd);
    return rc;
}

#undef WHY

int blob_verify(blob_store *bs, const struct blob_digests *dig, const struct blob_blocks *blocks)
{
    return check_blob(bs, dig, blocks, true, NULL, 0);
}

int blob_verify_why(blob_store *bs, const struct blob_digests *dig,
                    const struct blob_blocks *blocks, char *why, size_t why_len)
{
    if (why_len)
        why[0] = '\0';
    return check_blob(bs, dig, blocks, true, why, why_len);
}

int blob_scrub(blob_store *bs, const struct blob_digests *dig, const struct blob_blocks *blocks)
{
    return check_blob(bs, dig, blocks, false, NULL, 0);
}

/* A writer with its hash contexts, and no file yet. */
static int writer_alloc(blob_store *bs, blob_writer **out)
{
    int rc = 0;
    blob_writer *w = calloc(1, sizeof(*w));
    *out = NULL;
    if (!w)
        return -ENOMEM;
    w->bs = bs;
    w->fd = -1;
    if (bs->readonly) {
        rc = -EROFS;
        goto out;
    }
    w->sha256 = EVP_MD_CTX_new();
    w->sha1 = EVP_MD_CTX_new();
    w->md5 = EVP_MD_CTX_new();
    w->xxh = XXH3_createState();
    if (!w->sha256 || !w->sha1 || !w->md5 || !w->xxh) {
        rc = -ENOMEM;
        goto out;
    }
    if (!EVP_DigestInit_ex(w->sha256, bs->md_sha256, NULL) ||
        !EVP_DigestInit_ex(w->sha1, bs->md_sha1, NULL) ||
        !EVP_DigestInit_ex(w->md5, bs->md_md5, NULL) || XXH3_64bits_reset(w->xxh) != XXH_OK) {
        rc = ARCA_E_CRYPTO;
        goto out;
    }
    *out = w;
    w = NULL;
out:
    blob_writer_free(w);
    return rc;
}

int blob_writer_new(blob_store *bs, blob_writer **out)
{
    int rc;
    uint8_t rnd[16];
    char hex[33];
    blob_writer *w = NULL;
    *out = NULL;
    if ((rc = writer_alloc(bs, &w)) != 0 || (rc = rand_bytes(rnd, sizeof(rnd))) != 0)
        goto out;
    hex_encode(rnd, sizeof(rnd), hex);
    int n = snprintf(w->tmp_path, sizeof(w->tmp_path), "%s/%s", bs->tmpdir, hex);
    if (n < 0 || (size_t)n >= sizeof(w->tmp_path)) {
        w->tmp_path[0] = '\0';
        rc = -ENAMETOOLONG;
        goto out;
    }
    w->fd = open(w->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        rc = -errno;
        LOG_E("blob store: cannot create temp file in %s: %s", bs->tmpdir, strerror(errno));
        w->tmp_path[0] = '\0'; /* no file was created: never unlink that name */
        goto out;
    }
    w->can_direct = true;
    *out = w;
    w = NULL;
out:
    blob_writer_free(w);
    return rc;
}

static int hash_update(blob_writer *w, const void *buf, size_t len);
static int close_block(blob_writer *w);

/*
 * Feeds the bytes of fd from w->size on, up to EOF, to all of w's hashes
 * (read only); w->size ends at the bytes hashed.  0 or -errno, -ENOMEM.
 */
static int hash_fd(blob_writer *w, int fd)
{
    int rc = 0;
    char *buf = malloc(BLOB_BLOCK_SIZE);
    if (!buf)
        return -ENOMEM;
    for (;;) {
        ssize_t got = pread_full(fd, buf, BLOB_BLOCK_SIZE, w->size);
        if (got <= 0) {
            rc = (int)got;
            break;
        }
        if ((rc = hash_update(w, buf, (size_t)got)) != 0)
            break;
        EVP_DigestUpdate(w->md5, buf, (size_t)got);
        w->size += (uint64_t)got;
        w->hashed += (uint64_t)got;
    }
    free(buf);
    return rc;
}

/* Ends the last block and the three digests into w->dig.  0 or ARCA_E_CRYPTO, -ENOMEM. */
static int digests_final(blob_writer *w)
{
    int rc;
    if (w->block_fill > 0 && (rc = close_block(w)) != 0)
        return rc;
    if (!EVP_DigestFinal_ex(w->sha256, w->dig.sha256, NULL) ||
        !EVP_DigestFinal_ex(w->sha1, w->dig.sha1, NULL) ||
        !EVP_DigestFinal_ex(w->md5, w->dig.md5, NULL))
        return ARCA_E_CRYPTO;
    w->dig.size = w->size;
    return 0;
}

int blob_writer_resume(blob_store *bs, const uint8_t sha256[32], blob_writer **out, uint64_t *have)
{
    int rc;
    char hex[65], dir[PATH_MAX];
    blob_writer *w = NULL;
    *out = NULL;
    *have = 0;
    if ((rc = writer_alloc(bs, &w)) != 0)
        goto out;
    hex_encode(sha256, 32, hex);
    int n = snprintf(dir, sizeof(dir), "%s/partial", bs->dir);
    int m = snprintf(w->tmp_path, sizeof(w->tmp_path), "%s/partial/%s", bs->dir, hex);
    if (n < 0 || (size_t)n >= sizeof(dir) || m < 0 || (size_t)m >= sizeof(w->tmp_path)) {
        w->tmp_path[0] = '\0';
        rc = -ENAMETOOLONG;
        goto out;
    }
    if ((rc = fs_mkdirs(dir, 0755)) != 0) {
        w->tmp_path[0] = '\0';
        goto out;
    }
    w->keep = true;
    w->fd = open(w->tmp_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        rc = -errno;
        LOG_E("blob store: cannot open %s: %s", w->tmp_path, strerror(errno));
        w->tmp_path[0] = '\0';
        goto out;
    }
    /* What an earlier transfer left is hashed again (read only), then appended to. */
    if ((rc = hash_fd(w, w->fd)) != 0)
        goto out;
    if (lseek(w->fd, (off_t)w->size, SEEK_SET) < 0) {
        rc = -errno;
        goto out;
    }
    w->flushed = w->size;
    *have = w->size;
    *out = w;
    w = NULL;
out:
    blob_writer_free(w);
    return rc;
}

int blob_rehash(blob_store *bs, const uint8_t sha256[32], struct blob_digests *dig,
                struct blob_blocks *blocks)
{
    int rc, fd = -1;
    uint64_t size = 0;
    blob_writer *w = NULL;
    memset(blocks, 0, sizeof(*blocks));
    if ((rc = blob_open(bs, sha256, &fd, &size)) != 0)
        return rc;
    /* A writer without a file of its own: its hashing, never its writing. */
    if ((rc = writer_alloc(bs, &w)) != 0 || (rc = hash_fd(w, fd)) != 0 ||
        (rc = digests_final(w)) != 0)
        goto out;
    *dig = w->dig;
    blob_writer_take_blocks(w, blocks);
out:
    blob_writer_free(w);
    close(fd);
    return rc;
}

void blob_partial_remove(blob_store *bs, const uint8_t sha256[32])
{
    char hex[65], path[PATH_MAX];
    hex_encode(sha256, 32, hex);
    int n = snprintf(path, sizeof(path), "%s/partial/%s", bs->dir, hex);
    if (n > 0 && (size_t)n < sizeof(path) && !bs->readonly)
        unlink(path);
}

int blob_partial_each(blob_store *bs, void (*cb)(void *arg, const uint8_t sha256[32]), void *arg)
{
    char dir[PATH_MAX];
    uint8_t sha[32];
    int n = snprintf(dir, sizeof(dir), "%s/partial", bs->dir);
    if (n < 0 || (size_t)n >= sizeof(dir))
        return -ENAMETOOLONG;
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : -errno;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strlen(de->d_name) == 64 && hex_decode(de->d_name, 64, sha, 32) == 0)
            cb(arg, sha);
    closedir(d);
    return 0;
}

void blob_writer_discard(blob_writer *w)
{
    if (w)
        w->keep = false;
}

static int push_sum(blob_writer *w, uint64_t sum)
{
    if (w->nsums == w->cap) {
        uint32_t ncap = w->cap ? w->cap * 2 : 16;
        uint64_t *n = realloc(w->sums, ncap * sizeof(*n));
        if (!n)
            return -ENOMEM;
        w->sums = n;
        w->cap = ncap;
    }
    w->sums[w->nsums++] = sum;
    return 0;
}

/* Ends the current block: its xxh3 becomes the next block sum. */
static int close_block(blob_writer *w)
{
    int rc = push_sum(w, XXH3_64bits_digest(w->xxh));
    if (rc == 0 && XXH3_64bits_reset(w->xxh) != XXH_OK)
        rc = ARCA_E_CRYPTO;
    w->block_fill = 0;
    return rc;
}

static int write_full(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* SHA-256, SHA-1 and the block sums over the next len bytes (not MD5, not the file). */
static int hash_update(blob_writer *w, const void *buf, size_t len)
{
    if (!EVP_DigestUpdate(w->sha256, buf, len) || !EVP_DigestUpdate(w->sha1, buf, len))
        return ARCA_E_CRYPTO;
    /* Block boundaries sit at multiples of BLOB_BLOCK_SIZE whatever the chunking. */
    int rc;
    const char *p = buf;
    size_t left = len;
    while (left > 0) {
        size_t n = BLOB_BLOCK_SIZE - w->block_fill;
        if (n > left)
            n = left;
        if (XXH3_64bits_update(w->xxh, p, n) != XXH_OK)
            return ARCA_E_CRYPTO;
        w->block_fill += (uint32_t)n;
        p += n;
        left -= n;
        if (w->block_fill == BLOB_BLOCK_SIZE && (rc = close_block(w)) != 0)
            return rc;
    }
    return 0;
}

/* Sets or clears O_DIRECT on fd.  0 or -errno (EINVAL: the file system has no direct I/O). */
static int set_direct(int fd, bool on)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -errno;
    fl = on ? fl | O_DIRECT : fl & ~O_DIRECT;
    return fcntl(fd, F_SETFL, fl) == 0 ? 0 : -errno;
}

/*
 * Writes the stage's first n bytes (n a multiple of BLOB_DIRECT_ALIGN) to the
 * file directly and moves any rest to the front.  When a direct write is
 * refused (EINVAL: a file system without direct I/O, or a short write that
 * left the offset unaligned), the bytes not yet written, and all that follow,
 * go through the page cache: none is written twice.
 */
static int stage_flush(blob_writer *w, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t k = write(w->fd, w->stage + done, n - done);
        if (k > 0) {
            done += (size_t)k;
            continue;
        }
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && errno != EINVAL)
            return -errno;
        if (k == 0)
            return -EIO;
        LOG_D("blob store: direct write refused in %s; writing through the page cache",
              w->bs->tmpdir);
        w->direct = w->can_direct = false;
        int rc = set_direct(w->fd, false);
        if (rc == 0)
            rc = write_full(w->fd, w->stage + done, w->stage_len - done);
        w->stage_len = 0;
        return rc;
    }
    memmove(w->stage, w->stage + n, w->stage_len - n);
    w->stage_len -= n;
    return 0;
}

/* Appends buf to the stage, writing each full stage to the file. */
static int stage_write(blob_writer *w, const uint8_t *buf, size_t len)
{
    int rc = 0;
    while (len > 0 && w->direct) {
        size_t n = BLOB_STAGE_SIZE - w->stage_len;
        if (n > len)
            n = len;
        memcpy(w->stage + w->stage_len, buf, n);
        w->stage_len += n;
        buf += n;
        len -= n;
        if (w->stage_len == BLOB_STAGE_SIZE && (rc = stage_flush(w, BLOB_STAGE_SIZE)) != 0)
            return rc;
    }
    return len > 0 ? write_full(w->fd, buf, len) : 0; /* direct I/O was refused on the way */
}

/* Writes the bytes still in the stage and leaves the file buffered (O_DIRECT off). */
static int stage_drain(blob_writer *w)
{
    int rc = 0;
    if (!w->direct)
        return 0;
    size_t whole = w->stage_len - w->stage_len % BLOB_DIRECT_ALIGN;
    if (whole > 0)
        rc = stage_flush(w, whole);
    if (rc == 0 && w->direct) {
        w->direct = false;
        if ((rc = set_direct(w->fd, false)) == 0)
            rc = write_full(w->fd, w->stage, w->stage_len); /* the tail, under one block */
        w->stage_len = 0;
    }
    return rc;
}

/* Switches a new blob's file to direct writes, at w->size (aligned). */
static void go_direct(blob_writer *w)
{
    w->can_direct = false;
    if (!w->stage) {
        /* Mapped (page-aligned), so that it goes back to the system with the writer. */
        void *m = mmap(NULL, BLOB_STAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                       -1, 0);
        if (m == MAP_FAILED)
            return; /* no memory for the stage: stay buffered */
        w->stage = m;
    }
    if (set_direct(w->fd, true) != 0)
        return;
    w->direct = true;
    w->stage_len = 0;
}

int blob_writer_hash(blob_writer *w, const void *buf, size_t len)
{
    int rc = w->herr;
    if (rc == 0 && w->finished)
        rc = -EINVAL;
    if (rc == 0 && (rc = hash_update(w, buf, len)) == 0)
        w->hashed += len;
    if (rc != 0)
        w->herr = rc;
    return rc;
}

int blob_writer_store(blob_writer *w, const void *buf, size_t len)
{
    int rc = w->err;
    const uint8_t *p = buf;
    if (rc != 0)
        goto out;
    if (w->finished) {
        rc = -EINVAL;
        goto out;
    }
    if (!w->direct && w->can_direct && w->size + len >= BLOB_DIRECT_MIN) {
        /* Up to the next aligned offset through the page cache, the rest direct. */
        size_t head = (size_t)((BLOB_DIRECT_ALIGN - w->size % BLOB_DIRECT_ALIGN) % BLOB_DIRECT_ALIGN);
        if (head > len)
            head = len;
        if ((rc = write_full(w->fd, p, head)) != 0)
            goto werr;
        w->size += head;
        p += head;
        len -= head;
        if (w->size % BLOB_DIRECT_ALIGN == 0)
            go_direct(w);
    }
    rc = w->direct ? stage_write(w, p, len) : write_full(w->fd, p, len);
    if (rc != 0)
        goto werr;
    w->size += len;
    /*
     * Buffered: start the disk writing what has piled up, without waiting for
     * it, so that it overlaps the rest of the stream: otherwise the page cache
     * holds the whole blob until finish, whose fdatasync then writes all of it
     * (about a second per GiB here) after the last byte arrived.
     */
    if (!w->direct && w->size - w->flushed >= BLOB_FLUSH_BYTES) {
        (void)sync_file_range(w->fd, (off_t)w->flushed, (off_t)(w->size - w->flushed),
                              SYNC_FILE_RANGE_WRITE);
        w->flushed = w->size;
    }
    goto out;
werr:
    LOG_E("blob store: write to %s failed: %s", w->tmp_path, strerror(-rc));
out:
    if (rc != 0)
        w->err = rc;
    return rc;
}

int blob_writer_write(blob_writer *w, const void *buf, size_t len)
{
    int rc = blob_writer_hash(w, buf, len);
    return rc != 0 ? rc : blob_writer_store(w, buf, len);
}

void blob_writer_md5(blob_writer *w, const void *buf, size_t len)
{
    /* EVP_DigestUpdate cannot fail for an initialized software MD5. */
    EVP_DigestUpdate(w->md5, buf, len);
}

int blob_writer_finish(blob_writer *w, struct blob_digests *dig)
{
    int rc = w->err ? w->err : w->herr;
    if (rc != 0)
        goto out;
    if (w->finished || w->hashed != w->size) {
        rc = -EINVAL; /* finished twice, or the lanes were fed different bytes */
        goto out;
    }
    if ((rc = digests_final(w)) != 0)
        goto out;
    if ((rc = stage_drain(w)) != 0) {
        LOG_E("blob store: write to %s failed: %s", w->tmp_path, strerror(-rc));
        goto out;
    }
    if (fdatasync(w->fd) != 0) {
        rc = -errno;
        LOG_E("blob store: fdatasync %s failed: %s", w->tmp_path, strerror(errno));
        goto out;
    }
    w->finished = true;
    *dig = w->dig;
out:
    if (rc != 0)
        w->err = rc;
    return rc;
}

void blob_writer_take_blocks(blob_writer *w, struct blob_blocks *blocks)
{
    blocks->count = w->nsums;
    blocks->sums = w->sums;
    w->sums = NULL;
    w->nsums = 0;
    w->cap = 0;
}

int blob_writer_commit(blob_writer *w)
{
    int rc = 0;
    char final[PATH_MAX], shard[PATH_MAX];
    struct stat st;
    if (!w->finished || w->committed) {
        rc = -EINVAL;
        goto out;
    }
    if ((rc = blob_store_path(w->bs, w->dig.sha256, final, sizeof(final))) != 0)
        goto out;
    /* final is "<dir>/aa/<hex>" (store_open made every shard directory). */
    size_t dlen = strlen(w->bs->dir);
    memcpy(shard, final, dlen + 3);
    shard[dlen + 3] = '\0';
    close(w->fd);
    w->fd = -1;
    /*
     * The content may be stored already.  A stored copy that reads back whole
     * (size and every block's xxh3, as the new copy's) is kept and the temp
     * file dropped: a good copy that every coordinate shares is never put at
     * risk by a fresh write, and its cached pages stay warm.  One that does not
     * (a flipped byte keeps the size; only a read notices) is replaced by the
     * new copy, so uploading the good bytes again repairs it.  Readers of a
     * replaced copy keep their open file.
     */
    bool keep = false;
    if (stat(final, &st) == 0) {
        /* Against this writer's block sums; taken out already, against SHA-256. */
        struct blob_blocks mine = {.sums = w->sums, .count = w->nsums};
        bool have = w->sums != NULL || w->dig.size == 0;
        char why[160] = "";
        int src = check_blob(w->bs, &w->dig, have ? &mine : NULL, false, why, sizeof(why));
        keep = src == 0;
        if (!keep)
            LOG_W("blob store: the stored copy %s is damaged (%s); the new upload replaces it",
                  final, why[0] ? why : arca_strerror(src));
    }
    if (keep) {
        if (unlink(w->tmp_path) != 0)
            LOG_W("blob store: cannot remove %s: %s", w->tmp_path, strerror(errno));
    } else {
        int moved = rename(w->tmp_path, final);
        if (moved != 0 && errno == ENOENT && (mkdir(shard, 0755) == 0 || errno == EEXIST)) {
            /* The shard directory was removed by hand: make it again (and its name durable). */
            LOG_W("blob store: shard directory %s was missing; made it again", shard);
            if ((rc = fs_fsync_dir(w->bs->dir)) != 0)
                goto out;
            moved = rename(w->tmp_path, final);
        }
        if (moved != 0) {
            rc = -errno;
            LOG_E("blob store: rename to %s failed: %s", final, strerror(errno));
            goto out;
        }
    }
    w->committed = true;
    /*
     * The directory fsync makes the new name durable.  Even when deduplicated
     * it runs, because the writer that renamed the file may not have synced
     * the directory yet.
     */
    if ((rc = fs_fsync_dir(shard)) != 0) {
        LOG_E("blob store: directory fsync for %s failed: %s", final, strerror(-rc));
        goto out;
    }
out:
    return rc;
}

void blob_writer_free(blob_writer *w)
{
    if (!w)
        return;
    if (w->fd >= 0)
        close(w->fd);
    if (!w->committed && !w->keep && w->tmp_path[0] != '\0')
        unlink(w->tmp_path);
    EVP_MD_CTX_free(w->sha256);
    EVP_MD_CTX_free(w->sha1);
    EVP_MD_CTX_free(w->md5);
    XXH3_freeState(w->xxh);
    free(w->sums);
    if (w->stage)
        munmap(w->stage, BLOB_STAGE_SIZE);
    free(w);
}
