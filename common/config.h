/*
 * Configuration: one table of every setting (config.c: settings[]) with its
 * type, default and bounds.  Files are INI ("[section]" then "key = value").
 * Loading parses everything, validates everything, then the caller applies it;
 * an unknown section or key is an error that names the line.
 * conf/arca.conf documents every key with its default.
 */
#ifndef ARCA_CONFIG_H
#define ARCA_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "stages.h"

struct arca_config {
    /* [server] */
    char listen[128];           /* HOST:PORT; port 0 picks a free one; "off": no plain listener */
    uint64_t workers;           /* event-loop threads; 0 = one per CPU */
    uint64_t io_threads;        /* hashing/disk threads; 0 = one per CPU */
    uint64_t max_connections;   /* over this, new connections get 503 and close */
    uint64_t max_header_bytes;  /* request line + headers; over → 431 */
    uint64_t max_url_bytes;     /* request target; over → 414 */
    uint64_t max_upload_bytes;  /* request body; over → 413 before reading it */
    uint64_t header_timeout;    /* seconds to receive a whole header block */
    uint64_t idle_timeout;      /* seconds without progress on an open connection */
    uint64_t shutdown_grace;    /* seconds in-flight requests get on SIGTERM */
    bool access_log;            /* one line per request */
    /* [storage] */
    char data_dir[1024];
    bool verify_on_download;    /* check xxh3 block sums while serving */
    /* [tls] */
    char tls_listen[128];       /* HOST:PORT of the HTTPS listener; "" = none */
    char tls_cert_file[1024];
    char tls_key_file[1024];
    /* [auth] */
    char anonymous_read[1024];  /* comma-separated repository globs readable without a token */
    /* [log] */
    char log_level[16];
    /* [centre] */
    char centre_id[64];
    /* [stages], [gate.STAGE]: see stages.h */
    struct stage_policy stages;
};

/* Fills cfg with the embedded defaults. */
void config_init_defaults(struct arca_config *cfg);

/*
 * Reads an INI file over cfg.  Returns 0, or ARCA_E_CONFIG with a message
 * naming the file and line written to err.
 */
int config_load_file(struct arca_config *cfg, const char *path, char *err, size_t errlen);

/* Sets one key ("section", "key") from text; 0 or ARCA_E_CONFIG with err set. */
int config_set(struct arca_config *cfg, const char *section, const char *key, const char *value,
               char *err, size_t errlen);

/* Cross-field checks after loading; 0 or ARCA_E_CONFIG with err set. */
int config_validate(const struct arca_config *cfg, char *err, size_t errlen);

/* Writes every setting as "section.key = value" lines (for `arcad config`). */
void config_dump(const struct arca_config *cfg, FILE *out);

#endif
