/*
 * Unit tests for server/reqparse.c: the request parser arcad's connections
 * and the request fuzzer share.  Each case feeds bytes the way conn.c does
 * (only while reqparse_wants_input, again after every stop) and checks the
 * events, the request it saw and the verdicts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "httputil.h"
#include "reqparse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct reqparse_limits lim = {256, 1024, 1000};

struct sink {
    char body[4096];
    size_t len;
    size_t room; /* pause once this many bytes arrived (0: never) */
    int pauses;
};

static int sink_fn(void *arg, const char *data, size_t len)
{
    struct sink *s = arg;
    assert_true(s->len + len <= sizeof(s->body));
    memcpy(s->body + s->len, data, len);
    s->len += len;
    if (s->room && s->len >= s->room) {
        s->pauses++;
        s->room += s->room;
        return 1;
    }
    return 0;
}

/*
 * Feeds text in slices of at most step bytes while the parser wants input,
 * as conn.c does; stops at the first event other than MORE/BODY_FULL and
 * returns it (REQPARSE_MORE: all consumed).  *pos advances.
 */
static enum reqparse_event feed(struct reqparse *rp, const char *text, size_t *pos, size_t step)
{
    size_t len = strlen(text);
    while (*pos < len && reqparse_wants_input(rp, false, false)) {
        size_t n = len - *pos < step ? len - *pos : step, used;
        enum reqparse_event ev = reqparse_feed(rp, text + *pos, n, &used);
        assert_true(used <= n);
        *pos += used;
        if (ev == REQPARSE_BODY_FULL) {
            reqparse_resume_body(rp);
            continue;
        }
        if (ev != REQPARSE_MORE)
            return ev;
    }
    return REQPARSE_MORE;
}

static struct reqparse *new_rp(struct sink *s)
{
    struct reqparse *rp = NULL;
    assert_int_equal(reqparse_new(&lim, sink_fn, s, &rp), 0);
    return rp;
}

/* Feeds a whole head and returns the check's action (v filled unless OK). */
static enum reqparse_action head_verdict(const char *text, struct reqparse_verdict *v)
{
    struct sink s = {0};
    struct reqparse *rp = new_rp(&s);
    size_t pos = 0;
    enum reqparse_event ev = feed(rp, text, &pos, 1000);
    enum reqparse_action a;
    if (ev == REQPARSE_ERROR) {
        reqparse_error(rp, v);
        a = v->action;
        assert_int_equal(a, REQPARSE_FAIL);
    } else {
        assert_int_equal(ev, REQPARSE_HEADERS);
        a = reqparse_check(rp, v);
    }
    reqparse_free(rp);
    return a;
}

static void test_get_with_query(void **state)
{
    struct sink s = {0};
    struct reqparse *rp = new_rp(&s);
    const char *req = "GET /repos/a/b/1/x.jar?list=1&q=%20 HTTP/1.1\r\nHost: h\r\n"
                      "X-Long:  padded value \t \r\nx-long: second\r\n\r\n";
    size_t pos = 0;
    assert_false(reqparse_in_request(rp));
    assert_int_equal(feed(rp, req, &pos, 7), REQPARSE_HEADERS);
    assert_true(reqparse_in_request(rp));
    assert_true(reqparse_headers_done(rp));
    assert_string_equal(reqparse_path(rp), "/repos/a/b/1/x.jar?list=1&q=%20");
    struct reqparse_verdict v;
    assert_int_equal(reqparse_check(rp, &v), REQPARSE_OK);
    assert_string_equal(reqparse_method(rp), "GET");
    assert_false(reqparse_is_head(rp));
    assert_true(reqparse_keep_alive(rp));
    assert_string_equal(reqparse_path(rp), "/repos/a/b/1/x.jar");
    assert_int_equal(reqparse_path_len(rp), strlen("/repos/a/b/1/x.jar"));
    assert_string_equal(reqparse_query(rp), "list=1&q=%20");
    assert_string_equal(reqparse_header(rp, "x-long"), "padded value");
    assert_int_equal(reqparse_header_count(rp, "X-LONG"), 2);
    assert_null(reqparse_header(rp, "Content-Length"));
    assert_int_equal(reqparse_nheaders(rp), 3);
    const char *name, *value;
    size_t nlen, vlen;
    reqparse_header_at(rp, 2, &name, &nlen, &value, &vlen);
    assert_string_equal(name, "x-long");
    assert_int_equal(vlen, 6);
    assert_false(reqparse_has_body(rp));
    assert_int_equal(reqparse_content_length(rp), -1);
    /* No body: fed on to its end (the header block's last LF). */
    assert_true(reqparse_wants_input(rp, false, false));
    assert_int_equal(feed(rp, req, &pos, 7), REQPARSE_COMPLETE);
    assert_int_equal(pos, strlen(req));
    assert_true(reqparse_msg_complete(rp));
    assert_false(reqparse_wants_input(rp, true, false));
    reqparse_free(rp);
}

static void test_pipelined_byte_by_byte(void **state)
{
    struct sink s = {0};
    struct reqparse *rp = new_rp(&s);
    const char *reqs = "GET /a HTTP/1.1\r\nHost: t\r\n\r\nHEAD /b HTTP/1.0\r\n\r\n";
    size_t pos = 0;
    struct reqparse_verdict v;
    assert_int_equal(feed(rp, reqs, &pos, 1), REQPARSE_HEADERS);
    assert_int_equal(reqparse_check(rp, &v), REQPARSE_OK);
    assert_string_equal(reqparse_path(rp), "/a");
    assert_int_equal(feed(rp, reqs, &pos, 1), REQPARSE_COMPLETE);
    /* The second request waits until the first is answered and reset. */
    assert_false(reqparse_wants_input(rp, true, false));
    reqparse_reset(rp);
    assert_false(reqparse_in_request(rp));
    assert_string_equal(reqparse_path(rp), "");
    assert_int_equal(feed(rp, reqs, &pos, 1), REQPARSE_HEADERS);
    assert_int_equal(reqparse_check(rp, &v), REQPARSE_OK);
    assert_string_equal(reqparse_path(rp), "/b");
    assert_true(reqparse_is_head(rp));
    assert_int_equal(reqparse_http_minor(rp), 0);
    assert_false(reqparse_keep_alive(rp));
    assert_int_equal(feed(rp, reqs, &pos, 1), REQPARSE_COMPLETE);
    assert_int_equal(pos, strlen(reqs));
    reqparse_free(rp);
}

static void test_body_waits_for_accept_and_pauses(void **state)
{
    struct sink s = {.room = 4};
    struct reqparse *rp = new_rp(&s);
    const char *req = "PUT /x HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n0123456789GET";
    size_t pos = 0;
    struct reqparse_verdict v;
    assert_int_equal(feed(rp, req, &pos, 100), REQPARSE_HEADERS);
    assert_int_equal(reqparse_check(rp, &v), REQPARSE_OK);
    assert_int_equal(reqparse_content_length(rp), 10);
    assert_true(reqparse_has_body(rp));
    /* Not accepted: nothing of the body is read (an early answer need not read it). */
    assert_false(reqparse_wants_input(rp, false, false));
    reqparse_accept_body(rp);
    assert_true(reqparse_wants_input(rp, false, false));
    assert_false(reqparse_wants_input(rp, true, true)); /* answered, closing: stop reading */
    size_t used;
    assert_int_equal(reqparse_feed(rp, req + pos, strlen(req) - pos, &used), REQPARSE_BODY_FULL);
    assert_true(reqparse_body_paused(rp));
    assert_false(reqparse_wants_input(rp, false, false));
    pos += used;
    reqparse_resume_body(rp);
    assert_int_equal(feed(rp, req, &pos, 3), REQPARSE_COMPLETE);
    assert_int_equal(s.len, 10);
    assert_memory_equal(s.body, "0123456789", 10);
    assert_true(s.pauses >= 1);
    assert_int_equal(reqparse_body_bytes(rp), 10);
    assert_string_equal(req + pos, "GET"); /* the next request is left alone */
    reqparse_free(rp);
}

static void test_chunked(void **state)
{
    struct sink s = {0};
    struct reqparse *rp = new_rp(&s);
    const char *req = "PUT /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n";
    size_t pos = 0;
    struct reqparse_verdict v;
    assert_int_equal(feed(rp, req, &pos, 5), REQPARSE_HEADERS);
    assert_int_equal(reqparse_check(rp, &v), REQPARSE_OK);
    assert_true(reqparse_chunked(rp));
    assert_int_equal(reqparse_content_length(rp), -1);
    reqparse_accept_body(rp);
    assert_int_equal(feed(rp, req, &pos, 5), REQPARSE_COMPLETE);
    assert_int_equal(reqparse_chunk_state(rp), CHUNK_CHECK_DONE);
    assert_int_equal(s.len, 11);
    assert_memory_equal(s.body, "hello world", 11);
    assert_null(reqparse_header(rp, "X-Trailer")); /* trailers are never stored */
    reqparse_free(rp);

    /* Two bytes that are not CRLF after chunk data: the strict check refuses. */
    memset(&s, 0, sizeof(s));
    rp = new_rp(&s);
    req = "PUT /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n";
    pos = 0;
    assert_int_equal(feed(rp, req, &pos, 100), REQPARSE_HEADERS);
    assert_int_equal(reqparse_check(rp, &v), REQPARSE_OK);
    reqparse_accept_body(rp);
    assert_int_equal(feed(rp, req, &pos, 100), REQPARSE_ERROR);
    reqparse_error(rp, &v);
    assert_int_equal(v.action, REQPARSE_FAIL);
    assert_int_equal(v.status, 400);
    assert_string_equal(v.message, "malformed chunked encoding");
    reqparse_free(rp);
}

static void test_limits(void **state)
{
    struct reqparse_verdict v;
    char url[400];
    memset(url, 'a', sizeof(url));
    url[sizeof(url) - 1] = '\0';
    char req[1200];
    snprintf(req, sizeof(req), "GET /%s HTTP/1.1\r\nHost: t\r\n\r\n", url);
    assert_int_equal(head_verdict(req, &v), REQPARSE_FAIL);
    assert_int_equal(v.status, 414);
    assert_string_equal(v.code, "uri_too_long");

    char big[1100];
    memset(big, 'v', sizeof(big));
    big[sizeof(big) - 1] = '\0';
    snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: t\r\nX: %.1050s\r\n\r\n", big);
    assert_int_equal(head_verdict(req, &v), REQPARSE_FAIL);
    assert_int_equal(v.status, 431);

    assert_int_equal(head_verdict("PUT /x HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n", &v),
                     REQPARSE_REFUSE_CLOSE);
    assert_int_equal(v.status, 413);
    assert_non_null(strstr(v.message, "1001"));

    /* The target counts toward the head's limit even when the URL limit is larger. */
    {
        static const struct reqparse_limits wide_url = {1000, 300, 1000};
        struct sink s0 = {0};
        struct reqparse *rp0 = NULL;
        assert_int_equal(reqparse_new(&wide_url, sink_fn, &s0, &rp0), 0);
        /* no header field at all, where the check used to be */
        snprintf(req, sizeof(req), "GET /%.500s HTTP/1.0\r\n\r\n", big);
        size_t pos0 = 0;
        assert_int_equal(feed(rp0, req, &pos0, 1000), REQPARSE_ERROR);
        reqparse_error(rp0, &v);
        assert_int_equal(v.status, 431);
        reqparse_free(rp0);
    }

    /* A chunked body that grows past the limit fails while it is read. */
    struct sink s = {0};
    struct reqparse *rp = new_rp(&s);
    size_t pos = 0;
    char chunked[2000];
    snprintf(chunked, sizeof(chunked),
             "PUT /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3e9\r\n%.1001s\r\n0\r\n\r\n",
             big);
    assert_int_equal(feed(rp, chunked, &pos, 100), REQPARSE_HEADERS);
    assert_int_equal(reqparse_check(rp, &v), REQPARSE_OK);
    reqparse_accept_body(rp);
    assert_int_equal(feed(rp, chunked, &pos, 100), REQPARSE_ERROR);
    reqparse_error(rp, &v);
    assert_int_equal(v.status, 413);
    assert_true(s.len <= lim.max_upload_bytes);
    reqparse_free(rp);
}

static void test_strict_checks(void **state)
{
    static const struct {
        const char *req;
        enum reqparse_action action;
        int status;
    } cases[] = {
        {"GET  /a HTTP/1.1\r\nHost: t\r\n\r\n", REQPARSE_FAIL, 400}, /* two spaces */
        {"GET /a  HTTP/1.1\r\nHost: t\r\n\r\n", REQPARSE_FAIL, 400},
        {"GET /a HTTP/1.1 \r\n\r\n", REQPARSE_FAIL, 400},
        {"GET /a HTTP/1.1\r\nHost: t\r\nX: \x01y\r\n\r\n", REQPARSE_FAIL, 400}, /* CTL in a value */
        {"GET /a HTTP/1.1\r\nHost: t\r\nX: a\rb\r\n\r\n", REQPARSE_FAIL, 400},  /* bare CR */
        {"GET /a HTTP/1.1\r\nHost: t\r\nX(y): 1\r\n\r\n", REQPARSE_FAIL, 400},  /* not a token */
        {"GET /a HTTP/1.1\r\nHost: t\r\nHost: a\r\nHost: b\r\n\r\n", REQPARSE_FAIL, 400},
        {"GET /a HTTP/1.1\r\nHost: t\r\nAuthorization: a\r\nAuthorization: b\r\n\r\n", REQPARSE_FAIL, 400},
        {"PUT /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", REQPARSE_FAIL, 501},
        {"PUT /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
         REQPARSE_FAIL, 400},
        {"PUT /a HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", REQPARSE_FAIL, 400},
        {"GET /a HTTP/1.1\r\nHost: t\r\nExpect: 200-ok\r\n\r\n", REQPARSE_REFUSE, 417},
        {"GET a HTTP/1.1\r\nHost: t\r\n\r\n", REQPARSE_FAIL, 400}, /* not a path */
        {"GET /a HTTP/1.1\r\n\r\n", REQPARSE_FAIL, 400},               /* no Host */
        {"GET /a HTTP/1.0\r\n\r\n", REQPARSE_OK, 0},                    /* 1.0 needs none */
        {"PUT /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", REQPARSE_FAIL, 400},
        {"PUT /a HTTP/1.0\r\nContent-Length: 3\r\n\r\n", REQPARSE_OK, 0},
        {"FOO /a HTTP/1.1\r\nHost: t\r\n\r\n", REQPARSE_FAIL, 501},   /* an unknown method */
        {"PURGX /a HTTP/1.1\r\nHost: t\r\n\r\n", REQPARSE_FAIL, 501}, /* fails mid-token */
        {"get /a HTTP/1.1\r\nHost: t\r\n\r\n", REQPARSE_FAIL, 501},   /* methods are case-sensitive */
        {"\x01x\r\n\r\n", REQPARSE_FAIL, 400},                         /* not a method at all */
        {"G(T /a HTTP/1.1\r\nHost: t\r\n\r\n", REQPARSE_FAIL, 400},
        {"GARBAGE\r\n\r\n", REQPARSE_FAIL, 501}, /* stops at 'A': known no further than that */
        {"GET\r\n\r\n", REQPARSE_FAIL, 400},     /* a method, then no SP */
        {"GE /a HTTP/1.1\r\nHost: t\r\n\r\n", REQPARSE_FAIL, 501},     /* stops at the SP */
        {"DELET /a HTTP/1.1\r\nHost: t\r\n\r\n", REQPARSE_FAIL, 501},
        {" /a HTTP/1.1\r\nHost: t\r\n\r\n", REQPARSE_FAIL, 400},       /* no method */
        {"GET /a HTTP/2.0\r\nHost: t\r\n\r\n", REQPARSE_FAIL, 505},
        {"GET /a HTTP/1.2\r\nHost: t\r\n\r\n", REQPARSE_FAIL, 505},
        {"GET /a HTTP/1.x\r\nHost: t\r\n\r\n", REQPARSE_FAIL, 400},
        {"GET /a#frag HTTP/1.1\r\nHost: t\r\n\r\n", REQPARSE_FAIL, 400}, /* a fragment */
        {"GET /a%23b HTTP/1.1\r\nHost: t\r\n\r\n", REQPARSE_OK, 0},      /* an encoded '#' */
        {"GET /a?q=#x HTTP/1.1\r\nHost: t\r\n\r\n", REQPARSE_OK, 0},     /* in the query: not ours */
        {"GET /a HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n\r\n", REQPARSE_OK, 0},
        {"\r\nGET http://h:1/a?b HTTP/1.1\r\nHost: t\r\n\r\n", REQPARSE_OK, 0}, /* absolute form */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct reqparse_verdict v = {0};
        enum reqparse_action a = head_verdict(cases[i].req, &v);
        if (a != cases[i].action || (a != REQPARSE_OK && v.status != cases[i].status))
            fail_msg("case %zu (%s): action %d status %d, expected %d %d", i, cases[i].req, a,
                     v.status, cases[i].action, cases[i].status);
    }
}

static void test_header_end_must_be_lf(void **state)
{
    /* Debian's http-parser takes any byte after the last CR as LF; reqparse does not. */
    struct sink s = {0};
    struct reqparse *rp = new_rp(&s);
    const char *req = "PUT /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r10\r\n";
    size_t pos = 0;
    enum reqparse_event ev = feed(rp, req, &pos, 100);
    struct reqparse_verdict v;
    if (ev == REQPARSE_HEADERS)
        assert_int_equal(reqparse_check(rp, &v), REQPARSE_FAIL);
    else
        assert_int_equal(ev, REQPARSE_ERROR);
    reqparse_free(rp);
}

static void test_stop_and_reset(void **state)
{
    struct sink s = {0};
    struct reqparse *rp = new_rp(&s);
    const char *req = "GET /a HTTP/1.1\r\nHost: t\r\nHost: a\r\nHost: b\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\n\r\n";
    size_t pos = 0;
    struct reqparse_verdict v;
    assert_int_equal(feed(rp, req, &pos, 100), REQPARSE_HEADERS);
    assert_int_equal(reqparse_check(rp, &v), REQPARSE_FAIL);
    reqparse_stop(rp);
    assert_true(reqparse_msg_complete(rp));
    assert_false(reqparse_wants_input(rp, true, true));
    reqparse_reset(rp);
    assert_false(reqparse_headers_done(rp));
    assert_int_equal(reqparse_nheaders(rp), 0);
    assert_int_equal(reqparse_header_bytes(rp), 0);
    reqparse_free(rp);
    reqparse_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_with_query),
        cmocka_unit_test(test_pipelined_byte_by_byte),
        cmocka_unit_test(test_body_waits_for_accept_and_pauses),
        cmocka_unit_test(test_chunked),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_strict_checks),
        cmocka_unit_test(test_header_end_must_be_lf),
        cmocka_unit_test(test_stop_and_reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
