// Package console is the operator console: a static web page (HTML, CSS,
// plain JavaScript modules and the vendored uPlot charts) embedded in the
// binary with go:embed and served by Handler under /admin/ on the API
// listener when an admin token is configured. Nothing is fetched from
// another origin at run time; the page talks only to the operator API
// (/admin/v1) with the admin token as a Bearer header, kept in the tab's
// sessionStorage (no cookie).
//
// Every answer carries a strict Content-Security-Policy (scripts, styles,
// images and fetches from the page's own origin only; no inline script or
// style; no framing), X-Content-Type-Options: nosniff, Referrer-Policy:
// no-referrer and Cache-Control: no-cache with an ETag per file.
//
// static/vendor holds uPlot from npm, copied by scripts/vendor-console.sh
// (make console-vendor) from the committed package.json and
// package-lock.json.
//
// # Concurrency
//
// The handler is immutable after Handler and safe for concurrent use.
//
// # Hot path
//
// None: the page is loaded once per operator session; each answer is a
// lookup in a map built by Handler and one write.
package console
