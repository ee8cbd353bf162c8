/* Unit tests for server/httputil.c: decoding, path splitting, ranges, ETags, digests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "arca_err.h"
#include "httputil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_url_decode(void **state)
{
    char out[64];
    size_t n;
    assert_int_equal(url_decode("a%2Fb%20c+d", 11, out, &n), 0);
    assert_string_equal(out, "a/b c+d");
    assert_int_equal(url_decode("%2e%2E", 6, out, &n), 0);
    assert_string_equal(out, "..");
    assert_int_equal(url_decode("x%00y", 5, out, &n), 0);
    assert_int_equal(n, 3); /* the NUL is kept, with the true length */
    assert_int_equal(url_decode("%", 1, out, &n), ARCA_E_INVALID);
    assert_int_equal(url_decode("%4", 2, out, &n), ARCA_E_INVALID);
    assert_int_equal(url_decode("%zz", 3, out, &n), ARCA_E_INVALID);
    /* Decoded once: %252e stays "%2e", never "." */
    assert_int_equal(url_decode("%252e", 5, out, &n), 0);
    assert_string_equal(out, "%2e");
}

static void test_uri_escape_path(void **state)
{
    const char *cases[][2] = {
        {"/repos/libs/app/1.0/app.jar", "/repos/libs/app/1.0/app.jar"},
        {"/repos/r/n/1.0+build.5/a b%c?d#e;f", "/repos/r/n/1.0+build.5/a%20b%25c%3Fd%23e%3Bf"},
        {"/repos/r/n/1/caf\xc3\xa9/\x7f\"<>\\", "/repos/r/n/1/caf%C3%A9/%7F%22%3C%3E%5C"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *e = uri_escape_path(cases[i][0]);
        assert_non_null(e);
        assert_string_equal(e, cases[i][1]);
        /* decoding it once gives the input back */
        char out[128];
        size_t n;
        assert_int_equal(url_decode(e, strlen(e), out, &n), 0);
        assert_string_equal(out, cases[i][0]);
        free(e);
    }
}

static void test_path_split(void **state)
{
    const char *p = "/libs/app/1.0/a%2Fb/c";
    char buf[64];
    char *segs[8];
    size_t lens[8];
    int n = path_split(p, strlen(p), buf, segs, lens, 8);
    assert_int_equal(n, 5);
    assert_string_equal(segs[0], "libs");
    assert_string_equal(segs[3], "a/b");
    assert_string_equal(segs[4], "c");
    p = "/a//b/";
    n = path_split(p, strlen(p), buf, segs, lens, 8);
    assert_int_equal(n, 4);
    assert_int_equal(lens[1], 0);
    assert_int_equal(lens[3], 0);
    p = "/a/b/c";
    assert_int_equal(path_split(p, strlen(p), buf, segs, lens, 2), ARCA_E_TOOBIG);
    p = "/a/%zz";
    assert_int_equal(path_split(p, strlen(p), buf, segs, lens, 8), ARCA_E_INVALID);
    assert_int_equal(path_split("/", 1, buf, segs, lens, 8), 0);
}

static void test_range(void **state)
{
    uint64_t s, l;
    assert_int_equal(range_parse("bytes=0-9", 100, &s, &l), RANGE_OK);
    assert_int_equal(s, 0);
    assert_int_equal(l, 10);
    assert_int_equal(range_parse("bytes=90-", 100, &s, &l), RANGE_OK);
    assert_int_equal(l, 10);
    assert_int_equal(range_parse("bytes=-5", 100, &s, &l), RANGE_OK);
    assert_int_equal(s, 95);
    assert_int_equal(range_parse("bytes=-500", 100, &s, &l), RANGE_OK); /* clamps */
    assert_int_equal(s, 0);
    assert_int_equal(l, 100);
    assert_int_equal(range_parse("bytes=50-5000", 100, &s, &l), RANGE_OK);
    assert_int_equal(l, 50);
    assert_int_equal(range_parse("bytes=100-", 100, &s, &l), RANGE_UNSATISFIABLE);
    assert_int_equal(range_parse("bytes=-0", 100, &s, &l), RANGE_UNSATISFIABLE);
    assert_int_equal(range_parse("bytes=0-0", 0, &s, &l), RANGE_UNSATISFIABLE);
    assert_int_equal(range_parse("bytes=-0", 0, &s, &l), RANGE_UNSATISFIABLE);
    /* A suffix of an empty file is satisfiable, but no 206 can express it: 200. */
    assert_int_equal(range_parse("bytes=-1", 0, &s, &l), RANGE_NONE);
    /* Ignored (answer 200): malformed, reversed, other units, several ranges. */
    assert_int_equal(range_parse("bytes=9-1", 100, &s, &l), RANGE_NONE);
    assert_int_equal(range_parse("items=0-1", 100, &s, &l), RANGE_NONE);
    assert_int_equal(range_parse("bytes=0-1,5-6", 100, &s, &l), RANGE_NONE);
    assert_int_equal(range_parse("bytes=a-b", 100, &s, &l), RANGE_NONE);
    assert_int_equal(range_parse("bytes=-", 100, &s, &l), RANGE_NONE);
    assert_int_equal(range_parse("bytes=99999999999999999999-", 100, &s, &l), RANGE_NONE);
}

static void test_content_type(void **state)
{
    assert_string_equal(content_type_for("a/b/app.jar"), "application/java-archive");
    assert_string_equal(content_type_for("x.tar.gz"), "application/gzip");
    assert_string_equal(content_type_for("X.JSON"), "application/json");
    assert_string_equal(content_type_for("noext"), "application/octet-stream");
    assert_string_equal(content_type_for("dir.jar/file"), "application/octet-stream");
    assert_string_equal(content_type_for(".json"), "application/octet-stream");
}

static void test_etag(void **state)
{
    assert_true(etag_list_matches("\"abc\"", "\"abc\""));
    assert_true(etag_list_matches("\"x\", W/\"abc\"", "\"abc\""));
    assert_true(etag_list_matches("*", "\"abc\""));
    assert_false(etag_list_matches("\"abcd\"", "\"abc\""));
    assert_false(etag_list_matches("\"unterminated", "\"abc\""));
    /* Strong comparison (If-Match): a weak entry never matches. */
    assert_true(etag_list_matches_strong("\"abc\"", "\"abc\""));
    assert_true(etag_list_matches_strong("\"x\", \"abc\"", "\"abc\""));
    assert_true(etag_list_matches_strong("*", "\"abc\""));
    assert_false(etag_list_matches_strong("W/\"abc\"", "\"abc\""));
    assert_false(etag_list_matches_strong("\"x\", W/\"abc\"", "\"abc\""));
    assert_false(etag_list_matches_strong("", "\"abc\""));
}

static void test_content_digest(void **state)
{
    uint8_t d[32];
    /* sha-256 of "" is e3b0c442...; base64 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU= */
    const char *h = "md5=:1B2M2Y8AsgTpgAmY7PhCfg==:, sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:";
    assert_int_equal(content_digest_get(h, "sha-256", d, 32), 0);
    assert_int_equal(d[0], 0xe3);
    assert_int_equal(d[31], 0x55);
    assert_int_equal(content_digest_get(h, "md5", d, 16), 0);
    assert_int_equal(d[0], 0xd4);
    assert_int_equal(content_digest_get(h, "sha", d, 20), ARCA_E_NOTFOUND);
    assert_int_equal(content_digest_get("sha-256=:AAAA:", "sha-256", d, 32), ARCA_E_INVALID);
    assert_int_equal(content_digest_get("sha-256=47DE", "sha-256", d, 32), ARCA_E_INVALID);
    assert_int_equal(content_digest_get("garbage", "sha-256", d, 32), ARCA_E_INVALID);
    /* Any malformed member spoils the field, whichever algorithm is asked for. */
    assert_int_equal(content_digest_get("md5=:1B2M2Y8AsgTpgAmY7PhCfg==:, x", "md5", d, 16),
                     ARCA_E_INVALID);
    assert_int_equal(content_digest_get("sha-512=:!!:, md5=:1B2M2Y8AsgTpgAmY7PhCfg==:", "md5",
                                        d, 16),
                     ARCA_E_INVALID);
    /* Another algorithm's value is checked for its alphabet only, however long. */
    char big[400];
    snprintf(big, sizeof(big), "sha-512=:%0344d:, md5=:1B2M2Y8AsgTpgAmY7PhCfg==:", 0);
    assert_int_equal(content_digest_get(big, "md5", d, 16), 0);
    /* A quoted parameter may hold a comma; an unterminated one spoils the field. */
    assert_int_equal(content_digest_get("md5=:1B2M2Y8AsgTpgAmY7PhCfg==:;n=\"a,b\"", "md5", d, 16),
                     0);
    assert_int_equal(content_digest_get("md5=:1B2M2Y8AsgTpgAmY7PhCfg==:;n=\"a,b", "md5", d, 16),
                     ARCA_E_INVALID);
    /* Parameters are ignored; an upper-case key is accepted. */
    assert_int_equal(content_digest_get("md5=:1B2M2Y8AsgTpgAmY7PhCfg==:;a=1;b", "md5", d, 16), 0);
    assert_int_equal(content_digest_get("MD5=:1B2M2Y8AsgTpgAmY7PhCfg==:", "md5", d, 16), 0);
    /* The same algorithm twice: fine when equal, a conflict when not. */
    assert_int_equal(content_digest_get("md5=:1B2M2Y8AsgTpgAmY7PhCfg==:, "
                                        "md5=:1B2M2Y8AsgTpgAmY7PhCfg==:", "md5", d, 16),
                     0);
    assert_int_equal(content_digest_get("md5=:1B2M2Y8AsgTpgAmY7PhCfg==:, "
                                        "md5=:AAAAAAAAAAAAAAAAAAAAAA==:", "md5", d, 16),
                     ARCA_E_CONFLICT);
}

static void test_base64(void **state)
{
    uint8_t out[8];
    assert_int_equal(base64_decode("aGk=", 4, out, sizeof(out)), 2);
    assert_memory_equal(out, "hi", 2);
    assert_int_equal(base64_decode("aGk", 3, out, sizeof(out)), -1);
    assert_int_equal(base64_decode("a=Gk", 4, out, sizeof(out)), -1);
    assert_int_equal(base64_decode("aGVsbG8gd29ybGQ=", 16, out, sizeof(out)), -1); /* too long */
}

static int check_all(const char *s)
{
    struct chunk_check cc = {0};
    return chunk_check_feed(&cc, s, strlen(s));
}

static int check_bytewise(const char *s)
{
    struct chunk_check cc = {0};
    int rc = CHUNK_CHECK_MORE;
    for (size_t i = 0; s[i] && rc != CHUNK_CHECK_BAD; i++)
        rc = chunk_check_feed(&cc, s + i, 1);
    return rc;
}

static void test_chunk_check(void **state)
{
    struct chunk_check cc;
    const char *good[] = {
        "\n5\r\nhello\r\n0\r\n\r\n",
        "5\r\nhello\r\nA;ext=1\r\n0123456789\r\n0\r\n\r\n",
        "\n0\r\nX-Trailer: yes\r\n\r\n",
        "00000000000000000005\r\nhello\r\n0000000000000000000\r\n\r\n", /* leading zeros */
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        assert_int_equal(check_all(good[i]), CHUNK_CHECK_DONE);
        assert_int_equal(check_bytewise(good[i]), CHUNK_CHECK_DONE);
    }
    const char *bad[] = {
        "5\r\nhelloXX0\r\n\r\n",         /* garbage where the CRLF after data belongs */
        "5\r\nhello\n0\r\n\r\n",        /* bare LF */
        "zz\r\n",                        /* not hex */
        "\r\n",                          /* no size */
        "1000000000000000\r\n",          /* 16 hex digits */
        "5\nhello\r\n",                 /* bare LF after the size */
        "0\r\n\r\nGET / HTTP/1.1",       /* bytes after the end */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(check_all(bad[i]), CHUNK_CHECK_BAD);
        assert_int_equal(check_bytewise(bad[i]), CHUNK_CHECK_BAD);
    }
    assert_int_equal(check_all("5\r\nhel"), CHUNK_CHECK_MORE);
    assert_int_equal(check_all("0000000000000000000000001000000000000000\r\n"), CHUNK_CHECK_BAD);

    /* A size line is at most 4096 bytes, zeros and extensions included. */
    char line[4200];
    memset(line, '0', sizeof(line));
    cc = (struct chunk_check){0};
    assert_int_equal(chunk_check_feed(&cc, line, 4096), CHUNK_CHECK_MORE);
    assert_int_equal(chunk_check_feed(&cc, "0", 1), CHUNK_CHECK_BAD);
    cc = (struct chunk_check){0};
    line[0] = '5';
    line[1] = ';';
    assert_int_equal(chunk_check_feed(&cc, line, sizeof(line)), CHUNK_CHECK_BAD);

    /* A limit: the size line that takes the body past it is refused. */
    cc = (struct chunk_check){.limit = 10};
    const char *s1 = "5\r\nhello\r\n5\r\nworld\r\n";
    assert_int_equal(chunk_check_feed(&cc, s1, strlen(s1)), CHUNK_CHECK_MORE); /* exactly 10 */
    assert_int_equal(chunk_check_feed(&cc, "1\r\n", 3), CHUNK_CHECK_TOO_BIG);
    cc = (struct chunk_check){.limit = 1000};
    assert_int_equal(chunk_check_feed(&cc, "fffffffffff", 11), CHUNK_CHECK_TOO_BIG);
    cc = (struct chunk_check){.limit = 1000};
    assert_int_equal(chunk_check_feed(&cc, "3e8\r\n", 5), CHUNK_CHECK_MORE); /* 1000 */
}

static void test_tokens_and_request_line(void **state)
{
    assert_true(http_is_token("Content-Length", 14));
    assert_false(http_is_token("Bad Name", 8));
    assert_false(http_is_token("a:b", 3));
    assert_false(http_is_token("", 0));
    const char *ok = "GET /x HTTP/1.1";
    assert_true(http_request_line_ok(ok, strlen(ok)));
    const char *bads[] = {"GET /x HTTX/1.1", "GET /x HTTP/2.0", "GET /x", "GET  HTTP/1.1",
                          "G(T /x HTTP/1.1", "GET /x HTTP/1.1 "};
    for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++)
        assert_false(http_request_line_ok(bads[i], strlen(bads[i])));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_decode),    cmocka_unit_test(test_uri_escape_path),
        cmocka_unit_test(test_path_split),    cmocka_unit_test(test_range),
        cmocka_unit_test(test_content_type),
        cmocka_unit_test(test_etag),          cmocka_unit_test(test_content_digest),
        cmocka_unit_test(test_base64),        cmocka_unit_test(test_chunk_check),
        cmocka_unit_test(test_tokens_and_request_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
