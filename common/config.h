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
#define CONFIG_TLS_CLIENTS_MAX 64
#define CONFIG_TLS_CLIENT_KEY_MAX 71      /* "sha256/" + 64 hex digits */
#define CONFIG_TLS_CLIENT_SCOPES_MAX 1023
#define CONFIG_PEERS_MAX 16
#define CONFIG_PEER_NAME_MAX 63

/*
 * One [tls.clients] entry: a verified client certificate, by subject CN or by
 * SHA-256 fingerprint ("sha256/" + 64 lower-case hex digits), and the scopes
 * it gets (comma-separated; auth/ checks them).
 */
struct config_tls_client {
    char key[CONFIG_TLS_CLIENT_KEY_MAX + 1];
    char scopes[CONFIG_TLS_CLIENT_SCOPES_MAX + 1];
};

/*
 * One [peer.NAME] section: another centre this one pulls events and blobs
 * from.  NAME is the operator's label (letters, digits, '-', '_'); the peer's
 * centre id is whatever its events say.  Credentials: a token with the
 * replicate scope (token, or token_file holding it), and/or a client
 * certificate (cert_file + key_file) for an HTTPS peer that maps it.
 */
struct config_peer {
    char name[CONFIG_PEER_NAME_MAX + 1];
    char url[512];          /* http://HOST:PORT or https://HOST:PORT, no path */
    char token[128];
    char token_file[1024];
    char ca_file[1024];     /* PEM CAs for an https:// peer; "" = the system's */
    char cert_file[1024];
    char key_file[1024];
};

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
    uint64_t file_cache;        /* bytes of small files' contents kept in memory, all workers */
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
    /* [tls] client certificates (mTLS) */
    char tls_client_ca_file[1024]; /* PEM CAs that issue client certificates; "" = none */
    char tls_client_auth[16];      /* off, optional or required */
    /* [tls.clients]: not in the settings table (the keys are the operator's) */
    size_t ntls_clients;
    struct config_tls_client tls_clients[CONFIG_TLS_CLIENTS_MAX];
    /* [replication] */
    uint64_t repl_poll_ms;       /* wait between polls of a peer that had nothing new */
    uint64_t repl_batch;         /* events per request */
    uint64_t repl_retry_max;     /* seconds: the longest back-off after a failure */
    uint64_t repl_connect_timeout; /* seconds */
    uint64_t repl_parallel_fetches; /* blobs of a page fetched at once */
    /* [peer.NAME]: not in the settings table (the names are the operator's) */
    size_t npeers;
    struct config_peer peers[CONFIG_PEERS_MAX];
    /* The file this was loaded from ("" for none): SIGHUP reads [tls.clients] from it again. */
    char config_file[1024];
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

/*
 * Sets one [tls.clients] entry: key is a subject CN (1-64 characters of
 * A-Z a-z 0-9 . _ @ + -, starting with a letter or digit) or "sha256/" + 64
 * hex digits (any case; stored lower-case).  A key given again (or an INI
 * continuation line) adds its scopes to the entry.  0 or ARCA_E_CONFIG with
 * err naming the entry.  The scopes themselves are checked by auth/
 * (auth_certmap_set).
 */
int config_tls_client_set(struct arca_config *cfg, const char *key, const char *scopes, char *err,
                          size_t errlen);

/*
 * Sets one key of a [peer.NAME] section (url, token, token_file, ca_file,
 * cert_file, key_file).  0 or ARCA_E_CONFIG with err naming the key.
 */
int config_peer_set(struct arca_config *cfg, const char *name, const char *key, const char *value,
                    char *err, size_t errlen);

/* Cross-field checks after loading; 0 or ARCA_E_CONFIG with err set. */
int config_validate(const struct arca_config *cfg, char *err, size_t errlen);

/* True for HOST:PORT with a port of 1-5 digits up to 65535 (0: any free port). */
bool config_listen_ok(const char *s);

/* Writes every setting as "section.key = value" lines (for `arcad config`). */
void config_dump(const struct arca_config *cfg, FILE *out);

#endif
