/* Small helpers shared by several layers: hex, time, files, randomness. */
#ifndef ARCA_UTIL_H
#define ARCA_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Writes 2*len lowercase hex digits and a NUL into out (2*len+1 bytes). */
void hex_encode(const uint8_t *in, size_t len, char *out);
/* Decodes exactly 2*len hex digits (either case) from in; returns 0 or ARCA_E_INVALID. */
int hex_decode(const char *in, size_t inlen, uint8_t *out, size_t len);

/* Wall-clock milliseconds since the epoch. */
uint64_t time_now_ms(void);
/* Monotonic nanoseconds. */
uint64_t time_mono_ns(void);
/* Formats ms-since-epoch as RFC 3339 UTC with milliseconds ("2026-11-23T10:00:00.123Z"). */
void time_format_iso(uint64_t ms, char out[32]);
/* Formats seconds-since-epoch as an HTTP date (RFC 9110 IMF-fixdate). */
void time_format_http(int64_t secs, char out[40]);
/* Parses an HTTP date (IMF-fixdate, rfc850-date or asctime); 0 and *secs, or ARCA_E_INVALID. */
int time_parse_http(const char *s, int64_t *secs);
/* Parses "2026-01-31T12:00:00Z" (fractional seconds allowed) or "2026-01-31" (UTC). */
int time_parse_iso(const char *s, int64_t *secs);

/* mkdir -p with mode; 0 or -errno. */
int fs_mkdirs(const char *path, unsigned mode);
/* fsync() the directory at path; 0 or -errno. */
int fs_fsync_dir(const char *path);
/* Writes data to path atomically (temp, fsync, rename, fsync dir) with mode; 0 or -errno. */
int fs_write_atomic(const char *path, const void *data, size_t len, unsigned mode);
/* Reads a small file (< max bytes) into a malloc'd NUL-terminated buffer owned by the caller. */
int fs_read_small(const char *path, size_t max, char **out, size_t *outlen);

/* Fills buf with cryptographically secure random bytes; 0 or ARCA_E_CRYPTO. */
int rand_bytes(void *buf, size_t len);

/* Parses a size like "512", "64K", "16M", "4G", "1T" (binary units); 0 or ARCA_E_INVALID. */
int parse_size(const char *s, uint64_t *out);

#endif
