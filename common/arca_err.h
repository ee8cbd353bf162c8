/*
 * arca error codes.
 *
 * Every arca function that can fail returns int: 0 on success, a negative
 * code on failure.  System errors are returned as -errno; arca's own
 * conditions use the ARCA_E_* codes below, which never collide with errno.
 */
#ifndef ARCA_ERR_H
#define ARCA_ERR_H

enum {
    ARCA_OK = 0,
    ARCA_E_INVALID = -1001,  /* malformed input (bad name, bad JSON, ...) */
    ARCA_E_NOTFOUND = -1002, /* no such object */
    ARCA_E_CONFLICT = -1003, /* exists with different content */
    ARCA_E_CHECKSUM = -1004, /* a client-supplied checksum did not match */
    ARCA_E_CORRUPT = -1005,  /* stored data failed verification */
    ARCA_E_DB = -1006,       /* the index (RocksDB) failed */
    ARCA_E_CRYPTO = -1007,   /* OpenSSL failed */
    ARCA_E_TOOBIG = -1008,   /* over a configured limit */
    ARCA_E_EXISTS = -1009,   /* exists (precondition failed) */
    ARCA_E_CONFIG = -1010,   /* configuration error */
    ARCA_E_LIMITED = -1011,  /* refused by a rate limit */
    ARCA_E_PRECONDITION = -1012, /* a rule's precondition is unmet (quality gates) */
};

/* A static, human-readable description of code (never NULL). */
const char *arca_strerror(int code);

#endif
