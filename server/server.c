/*
 * The server: one event loop per worker thread, each with its own listening
 * socket on the same port (SO_REUSEPORT, so the kernel spreads connections),
 * plus the I/O pool for everything that may wait on a disk.  The main thread
 * only waits for SIGTERM/SIGINT and then drains the workers.
 */
#include "arca_err.h"
#include "audit.h"
#include "auth.h"
#include "blob.h"
#include "filecache.h"
#include "log.h"
#include "lifecycle.h"
#include "repl.h"
#include "repo.h"
#include "server_int.h"
#include "tls.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <limits.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void format_peer(const struct sockaddr *sa, char *out, size_t len, char *ip, size_t iplen)
{
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        port = ntohs(in->sin_port);
        snprintf(out, len, "%s:%d", host, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        port = ntohs(in6->sin6_port);
        snprintf(out, len, "[%s]:%d", host, port);
    } else {
        snprintf(out, len, "unknown");
    }
    snprintf(ip, iplen, "%s", host);
}

static void accept_one(struct worker *w, evutil_socket_t fd, struct sockaddr *sa, bool tls)
{
    struct server *srv = w->srv;
    if ((uint64_t)atomic_load(&srv->metrics.connections) >= srv->cfg.max_connections) {
        /*
         * Over the cap: a short, complete answer, then close.  Best effort, never
         * blocks.  The client's request is not read, so the close is a gentle
         * one (FIN after the answer), and a client that already sent its request
         * still gets the whole answer, not a reset.
         */
        static const char body[] =
            "{\"error\":{\"code\":\"unavailable\",\"message\":\"too many connections; retry\"}}\n";
        char busy[512], date[40], rid[72];
        time_format_http((int64_t)time(NULL), date);
        worker_request_id(w, rid, sizeof(rid));
        int n = snprintf(busy, sizeof(busy),
                         "HTTP/1.1 503 Service Unavailable\r\nDate: %s\r\nServer: arca\r\n"
                         "X-Request-Id: %s\r\nContent-Type: application/json\r\n"
                         "Connection: close\r\nRetry-After: 1\r\nContent-Length: %zu\r\n\r\n%s",
                         date, rid, sizeof(body) - 1, body);
        ssize_t wr = send(fd, busy, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)wr;
        shutdown(fd, SHUT_WR);
        char drain[4096]; /* what the client sent already: dropped, so close sends no RST */
        while (recv(fd, drain, sizeof(drain), MSG_DONTWAIT) > 0)
            ;
        atomic_fetch_add(&srv->metrics.connections_rejected, 1);
        close(fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    char peer[64], ip[INET6_ADDRSTRLEN];
    format_peer(sa, peer, sizeof(peer), ip, sizeof(ip));
    SSL *ssl = NULL;
    if (tls && !(ssl = tls_ctx_new_ssl(srv->tls))) {
        close(fd);
        return;
    }
    conn_accept(w, fd, peer, ip, ssl);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int socklen, void *arg)
{
    accept_one(arg, fd, sa, false);
}

static void on_accept_tls(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                          int socklen, void *arg)
{
    accept_one(arg, fd, sa, true);
}

static void on_grace_over(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    LOG_W("worker %d: shutdown grace over with requests still running; stopping them", w->id);
    event_base_loopbreak(w->base);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    if (w->draining)
        return;
    w->draining = true;
    if (w->listener) {
        evconnlistener_free(w->listener);
        w->listener = NULL;
    }
    if (w->tls_listener) {
        evconnlistener_free(w->tls_listener);
        w->tls_listener = NULL;
    }
    struct timeval tv = {(time_t)w->srv->cfg.shutdown_grace, 0};
    evtimer_add(w->grace_ev, &tv);
    conn_drain_all(w);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    event_base_dispatch(w->base);
    return NULL;
}

static int parse_listen(const char *listen, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[128];
    const char *colon = strrchr(listen, ':');
    /* The port checked as config_validate does: getaddrinfo would wrap 99999. */
    if (!colon || (size_t)(colon - listen) >= sizeof(host) || !config_listen_ok(listen))
        return ARCA_E_CONFIG;
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = '\0';
    char *h = host;
    if (h[0] == '[' && h[strlen(h) - 1] == ']') {
        h[strlen(h) - 1] = '\0';
        h++;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    if (getaddrinfo(*h ? h : NULL, colon + 1, &hints, &res) != 0 || !res)
        return ARCA_E_CONFIG;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static struct evconnlistener *listen_on(struct worker *w, evconnlistener_cb cb,
                                        struct sockaddr *sa, socklen_t salen)
{
    return evconnlistener_new_bind(
        w->base, cb, w,
        LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT | LEV_OPT_CLOSE_ON_EXEC,
        1024, sa, (int)salen);
}

static int worker_init(struct server *srv, struct worker *w, int id)
{
    w->srv = srv;
    w->id = id;
    /*
     * The epoll changelist folds the event changes of one loop iteration into
     * one epoll_ctl per descriptor: a keep-alive request disables reading and
     * enables writing (and back), which was 4 epoll_ctl per request without it.
     * Its caveat (dup()ed descriptors) does not apply: every socket is its own.
     */
    struct event_config *ec = event_config_new();
    if (!ec)
        return -ENOMEM;
    event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    w->base = event_base_new_with_config(ec);
    event_config_free(ec);
    if (!w->base)
        return -ENOMEM;
    if (mailbox_new(w->base, &w->mbox) != 0)
        return -ENOMEM;
    w->stop_ev = event_new(w->base, -1, 0, on_stop, w);
    w->grace_ev = evtimer_new(w->base, on_grace_over, w);
    w->scratch = malloc(BLOB_BLOCK_SIZE);
    if (!w->stop_ev || !w->grace_ev || !w->scratch)
        return -ENOMEM;
    /* Each worker caches on its own (no locks): the budget is split between them. */
    size_t budget = (size_t)(w->srv->cfg.file_cache / w->srv->nworkers);
    w->fcache = file_cache_new(budget);
    if (budget > 0 && !w->fcache)
        return -ENOMEM;
    return 0;
}

/*
 * The workers' sockets share their port through SO_REUSEPORT, which the
 * kernel would also let another process of the same user join: a second
 * arcad on the same port would start and take half the connections.  So a
 * fixed port is first bound once without SO_REUSEPORT, which fails while
 * anything listens there.  0, or -EADDRINUSE / -errno.
 */
static int port_free(const struct sockaddr_storage *ss, socklen_t sslen)
{
    in_port_t port = ss->ss_family == AF_INET6 ? ((const struct sockaddr_in6 *)ss)->sin6_port
                                               : ((const struct sockaddr_in *)ss)->sin_port;
    if (port == 0)
        return 0; /* the kernel picks a port nobody uses */
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1, rc = 0;
    if (fd < 0)
        return -errno;
    /* SO_REUSEADDR as the real sockets have it: old TIME_WAIT pairs are no conflict. */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)ss, sslen) != 0)
        rc = -errno;
    close(fd);
    return rc;
}

/* Resolves addr and checks its port is free (both logged).  0, ARCA_E_CONFIG or -errno. */
static int listen_address(const char *addr, struct sockaddr_storage *ss, socklen_t *sslen)
{
    int rc;
    if (parse_listen(addr, ss, sslen) != 0) {
        LOG_E("cannot use listen address '%s': expected HOST:PORT with a port of 0-65535 and "
              "a host that resolves",
              addr);
        return ARCA_E_CONFIG;
    }
    if ((rc = port_free(ss, *sslen)) != 0) {
        LOG_E("cannot listen on %s: %s", addr,
              rc == -EADDRINUSE ? "another process is listening on it (a second arcad would "
                                  "share it through SO_REUSEPORT and split the requests)"
                                : arca_strerror(rc));
        return rc;
    }
    return 0;
}

/*
 * Opens one listening socket per worker on addr (SO_REUSEPORT).  With port 0
 * the first socket picks the port and the others share it; the port is
 * written to <data>/<portfile>.  0 or -errno.
 */
static int open_listeners(struct server *srv, const char *addr, bool tls, const char *portfile)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    char path[PATH_MAX], host[128];
    int port = 0, rc;
    if ((rc = listen_address(addr, &ss, &sslen)) != 0)
        return rc;
    for (size_t i = 0; i < srv->nworkers; i++) {
        struct worker *w = &srv->workers[i];
        struct evconnlistener *l = listen_on(w, tls ? on_accept_tls : on_accept,
                                             (struct sockaddr *)&ss, sslen);
        if (!l) {
            rc = errno ? -errno : -EADDRINUSE;
            LOG_E("cannot listen on %s: %s", addr, arca_strerror(rc));
            return rc;
        }
        if (tls)
            w->tls_listener = l;
        else
            w->listener = l;
        if (i == 0) {
            struct sockaddr_storage bound;
            socklen_t blen = sizeof(bound);
            getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&bound, &blen);
            port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                     : ((struct sockaddr_in *)&bound)->sin_port);
            if (ss.ss_family == AF_INET6)
                ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)port);
            else
                ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);
        }
    }
    char line[16];
    int n = snprintf(line, sizeof(line), "%d\n", port);
    snprintf(path, sizeof(path), "%s/%s", srv->cfg.data_dir, portfile);
    if ((rc = fs_write_atomic(path, line, (size_t)n, 0644)) != 0) {
        LOG_E("cannot write %s: %s", path, arca_strerror(rc));
        return rc;
    }
    snprintf(host, sizeof(host), "%.*s", (int)(strrchr(addr, ':') - addr), addr);
    LOG_I("listening on %s:%d (%s)", host, port, tls ? "https" : "http");
    if (tls)
        srv->tls_port = port;
    else
        srv->port = port;
    return 0;
}

static void worker_cleanup(struct worker *w)
{
    if (w->listener)
        evconnlistener_free(w->listener);
    if (w->tls_listener)
        evconnlistener_free(w->tls_listener);
    if (w->base)
        conn_free_all(w);
    if (w->stop_ev)
        event_free(w->stop_ev);
    if (w->grace_ev)
        event_free(w->grace_ev);
    mailbox_free(w->mbox);
    free(w->scratch);
    file_cache_free(w->fcache);
    if (w->base)
        event_base_free(w->base);
}

static struct server *signal_srv;

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct event_base *main_base = arg;
    struct server *srv = signal_srv;
    if (srv->shutting_down)
        return;
    LOG_I("signal %d: stopping; in-flight requests have %llus", (int)sig,
          (unsigned long long)srv->cfg.shutdown_grace);
    srv->shutting_down = true;
    for (size_t i = 0; i < srv->nworkers; i++)
        event_active(srv->workers[i].stop_ev, EV_READ, 0);
    event_base_loopexit(main_base, NULL);
}

/*
 * Installs cfg's [tls.clients] mapping in a (a NULL: only checks it).  0, or
 * ARCA_E_CONFIG with err naming the entry.
 */
static int certmap_from_config(auth *a, const struct arca_config *cfg, char *err, size_t errlen)
{
    const char *keys[CONFIG_TLS_CLIENTS_MAX], *scopes[CONFIG_TLS_CLIENTS_MAX];
    for (size_t i = 0; i < cfg->ntls_clients; i++) {
        keys[i] = cfg->tls_clients[i].key;
        scopes[i] = cfg->tls_clients[i].scopes;
    }
    int rc = auth_certmap_set(a, cfg->ntls_clients, keys, scopes, err, errlen);
    return rc == 0 || rc == ARCA_E_CONFIG ? rc : ARCA_E_CONFIG;
}

/*
 * SIGHUP, [tls.clients]: read the mapping again from the config file, so that
 * an operator can grant or withdraw a certificate's rights without a restart.
 * Only that section is taken; a file that no longer loads keeps the mapping.
 */
static void reload_certmap(struct server *srv)
{
    char err[512];
    if (!srv->cfg.config_file[0] || strcmp(srv->cfg.tls_client_auth, "off") == 0)
        return;
    struct arca_config *fresh = malloc(sizeof(*fresh));
    if (!fresh)
        return;
    config_init_defaults(fresh);
    if (config_load_file(fresh, srv->cfg.config_file, err, sizeof(err)) != 0 ||
        certmap_from_config(srv->auth, fresh, err, sizeof(err)) != 0)
        LOG_E("SIGHUP: [tls.clients] not reloaded, keeping the current mapping: %s", err);
    else
        LOG_I("SIGHUP: reloaded [tls.clients] from %s (%zu clients)", srv->cfg.config_file,
              fresh->ntls_clients);
    free(fresh);
}

/*
 * SIGHUP: reload the TLS certificate, key and client CAs (open connections
 * keep the context they started with) and the client certificate mapping.
 */
static void on_reload(evutil_socket_t sig, short what, void *arg)
{
    struct server *srv = arg;
    char err[512];
    if (!srv->tls) {
        LOG_I("SIGHUP: no TLS listener, nothing to reload");
        return;
    }
    if (tls_ctx_reload(srv->tls, err, sizeof(err)) == 0)
        LOG_I("SIGHUP: reloaded the TLS certificate from %s%s%s", srv->cfg.tls_cert_file,
              srv->cfg.tls_client_ca_file[0] ? " and the client CAs from " : "",
              srv->cfg.tls_client_ca_file);
    else
        LOG_E("SIGHUP: TLS reload failed, keeping the current certificate: %s", err);
    reload_certmap(srv);
}

static size_t cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (size_t)n : 1;
}

int server_run(const struct arca_config *cfg)
{
    int rc = 0;
    char path[PATH_MAX];
    struct event_base *main_base = NULL;
    struct event *sigterm = NULL, *sigint = NULL, *sighup = NULL;
    struct server *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return -ENOMEM;
    srv->cfg = *cfg;
    evthread_use_pthreads();
    signal(SIGPIPE, SIG_IGN);
    /* A file-size limit (ulimit -f) makes a write fail with EFBIG, answered 500, not kill us. */
    signal(SIGXFSZ, SIG_IGN);
    /*
     * Streams allocate and free buffers of 0.5-2 MiB block after block (a TLS
     * download's output chains, upload chunks).  glibc's sliding thresholds
     * sometimes hand each freed one back to the kernel (munmap, or madvise
     * when trimming a thread's arena), and every next block then page-faults
     * its memory in again: on this VM half the 1 GiB TLS downloads ran at
     * 0.22 GB/s instead of 0.83 (docs/PERFORMANCE.md).  Fixed thresholds keep
     * such buffers in the arenas; the peak memory in use is unchanged.
     */
    mallopt(M_MMAP_THRESHOLD, 4 << 20);
    mallopt(M_TRIM_THRESHOLD, 16 << 20);
    {
        char err[512];
        if ((rc = certmap_from_config(NULL, cfg, err, sizeof(err))) != 0) {
            LOG_E("%s", err); /* checked before anything is opened or created */
            goto out;
        }
    }

    {
        /*
         * The listen addresses before anything is created: a host that does
         * not resolve or a port in use must not leave a half-made data dir.
         */
        struct sockaddr_storage ss;
        socklen_t sslen;
        if ((strcmp(cfg->listen, "off") != 0 &&
             (rc = listen_address(cfg->listen, &ss, &sslen)) != 0) ||
            (cfg->tls_listen[0] && (rc = listen_address(cfg->tls_listen, &ss, &sslen)) != 0))
            goto out;
    }
    if ((rc = fs_mkdirs(cfg->data_dir, 0750)) != 0) {
        LOG_E("cannot create data directory %s: %s", cfg->data_dir, arca_strerror(rc));
        goto out;
    }
    /*
     * The index first: its lock keeps a second arcad off this data directory
     * before the blob store clears temp files or moves blobs to a new layout.
     */
    snprintf(path, sizeof(path), "%s/index", cfg->data_dir);
    if ((rc = repo_db_open(path, cfg->centre_id, &srv->db)) != 0) {
        LOG_E("cannot open index %s: %s", path, arca_strerror(rc));
        goto out;
    }
    snprintf(path, sizeof(path), "%s/blobs", cfg->data_dir);
    if ((rc = blob_store_open(path, &srv->blobs)) != 0) {
        LOG_E("cannot open blob store %s: %s", path, arca_strerror(rc));
        goto out;
    }
    if ((rc = repo_set_policy(srv->db, &cfg->stages)) != 0) {
        LOG_E("the stage and gate configuration is invalid");
        goto out;
    }
    int created = 0;
    if ((rc = auth_open(cfg->data_dir, srv->db, cfg->anonymous_read, &srv->auth, &created)) != 0) {
        LOG_E("cannot set up the admin token in %s: %s", cfg->data_dir, arca_strerror(rc));
        goto out;
    }
    if (created)
        LOG_I("created an admin token in %s/admin.token (mode 0600)", cfg->data_dir);
    if ((rc = audit_signer_open(cfg->data_dir, true, &srv->signer, &created)) != 0) {
        LOG_E("cannot load the audit signing key %s/%s: %s", cfg->data_dir, AUDIT_KEY_FILE,
              arca_strerror(rc));
        goto out;
    }
    if (created)
        LOG_I("created the audit signing key %s/%s (mode 0600)", cfg->data_dir, AUDIT_KEY_FILE);
    {
        char err[512];
        if ((rc = certmap_from_config(srv->auth, cfg, err, sizeof(err))) != 0) {
            LOG_E("%s", err);
            goto out;
        }
    }

    uint8_t r[4];
    rand_bytes(r, sizeof(r));
    hex_encode(r, sizeof(r), srv->rid_prefix);

    size_t nio = cfg->io_threads ? cfg->io_threads : cpu_count();
    if ((rc = iopool_new(nio, &srv->pool)) != 0)
        goto out;

    if (cfg->tls_listen[0]) {
        char err[512];
        int mode = tls_client_auth_parse(cfg->tls_client_auth); /* config_validate checked it */
        if ((rc = tls_ctx_new(cfg->tls_cert_file, cfg->tls_key_file, cfg->tls_client_ca_file,
                              mode < 0 ? TLS_CLIENT_AUTH_OFF : (enum tls_client_auth)mode,
                              &srv->tls, err, sizeof(err))) != 0) {
            LOG_E("%s", err);
            goto out;
        }
        if (mode > TLS_CLIENT_AUTH_OFF)
            LOG_I("client certificates %s on the HTTPS listener (CAs from %s, %zu mapped in "
                  "[tls.clients])", cfg->tls_client_auth, cfg->tls_client_ca_file,
                  cfg->ntls_clients);
    }
    srv->nworkers = cfg->workers ? cfg->workers : cpu_count();
    srv->workers = calloc(srv->nworkers, sizeof(struct worker));
    if (!srv->workers) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < srv->nworkers; i++)
        if ((rc = worker_init(srv, &srv->workers[i], (int)i)) != 0)
            goto out;
    /*
     * Signal handlers go in before the port files appear: those files tell the world we
     * are up, and a SIGHUP or SIGTERM sent on seeing them must not meet the default action.
     * libevent records a signal that comes before the loop runs and delivers it then.
     */
    main_base = event_base_new();
    signal_srv = srv;
    sigterm = evsignal_new(main_base, SIGTERM, on_signal, main_base);
    sigint = evsignal_new(main_base, SIGINT, on_signal, main_base);
    sighup = evsignal_new(main_base, SIGHUP, on_reload, srv);
    if (!main_base || !sigterm || !sigint || !sighup) {
        rc = -ENOMEM;
        goto out;
    }
    evsignal_add(sigterm, NULL);
    evsignal_add(sigint, NULL);
    evsignal_add(sighup, NULL);

    if (strcmp(cfg->listen, "off") != 0 &&
        (rc = open_listeners(srv, cfg->listen, false, "arcad.port")) != 0)
        goto out;
    if (cfg->tls_listen[0] && (rc = open_listeners(srv, cfg->tls_listen, true, "arcad.tls.port")) != 0)
        goto out;
    LOG_I("serving (data %s, %zu workers, %zu io threads, centre %s)", cfg->data_dir,
          srv->nworkers, nio, cfg->centre_id);

    if ((rc = repl_start(cfg, srv->db, srv->blobs, &srv->repl)) != 0) {
        LOG_E("replication: cannot start the peer pullers: %s", arca_strerror(rc));
        goto out;
    }
    if (cfg->npeers)
        LOG_I("replication: %zu peer(s) configured", cfg->npeers);

    for (size_t i = 0; i < srv->nworkers; i++)
        pthread_create(&srv->workers[i].thread, NULL, worker_main, &srv->workers[i]);
    event_base_dispatch(main_base);
    /*
     * Shutdown: the pullers stop first (an unfinished blob stays resumable);
     * their status stays readable by workers still answering, until freed below.
     */
    repl_halt(srv->repl);
    for (size_t i = 0; i < srv->nworkers; i++)
        pthread_join(srv->workers[i].thread, NULL);
    LOG_I("all workers stopped");

out:
    repl_stop(srv->repl);
    srv->repl = NULL;
    /* The pool first: after it, no job runs or completes, so connections can go. */
    iopool_free(srv->pool);
    srv->pool = NULL;
    if (srv->workers)
        for (size_t i = 0; i < srv->nworkers; i++)
            worker_cleanup(&srv->workers[i]);
    free(srv->workers);
    if (sigterm)
        event_free(sigterm);
    if (sigint)
        event_free(sigint);
    if (sighup)
        event_free(sighup);
    if (main_base)
        event_base_free(main_base);
    repo_db_free(srv->db);
    blob_store_free(srv->blobs);
    auth_free(srv->auth);
    audit_signer_free(srv->signer);
    tls_ctx_free(srv->tls);
    free(srv);
    libevent_global_shutdown();
    return rc;
}
