package console_test

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"floodgate/console"
)

func get(t *testing.T, h http.Handler, method, path string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// TestEveryFileIsServedWithItsTypeAndTheSecurityHeaders walks the static
// directory on disk: each file is served under /admin/ with its content
// type, the CSP and the other headers, and revalidates by ETag.
func TestEveryFileIsServedWithItsTypeAndTheSecurityHeaders(t *testing.T) {
	h := console.Handler()
	types := map[string]string{".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
		".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", "": "text/plain; charset=utf-8", ".LICENSE": "text/plain; charset=utf-8"}
	n := 0
	err := filepath.WalkDir("static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		want, _ := os.ReadFile(p)
		path := "/admin/" + filepath.ToSlash(strings.TrimPrefix(p, "static/"))
		rec := get(t, h, "GET", path, nil)
		if rec.Code != 200 || rec.Body.String() != string(want) {
			t.Errorf("GET %s: %d, %d bytes", path, rec.Code, rec.Body.Len())
		}
		if ct := rec.Header().Get("Content-Type"); ct != types[filepath.Ext(p)] {
			t.Errorf("GET %s: Content-Type %q", path, ct)
		}
		checkHeaders(t, path, rec.Header())
		etag := rec.Header().Get("ETag")
		if r := get(t, h, "GET", path, map[string]string{"If-None-Match": etag}); etag == "" || r.Code != 304 || r.Body.Len() != 0 {
			t.Errorf("GET %s with its ETag: %d", path, r.Code)
		}
		return nil
	})
	if err != nil || n < 10 {
		t.Fatalf("walk: %v, %d files", err, n)
	}
	if rec := get(t, h, "GET", "/admin/", nil); rec.Code != 200 || !strings.Contains(rec.Body.String(), "<title>Floodgate console</title>") {
		t.Fatalf("GET /admin/: %d", rec.Code)
	}
	if rec := get(t, h, "HEAD", "/admin/app.js", nil); rec.Code != 200 || rec.Body.Len() != 0 {
		t.Fatalf("HEAD: %d, %d bytes", rec.Code, rec.Body.Len())
	}
	for _, p := range []string{"/admin/nope.js", "/admin/../console.go", "/admin/static/app.js", "/other"} {
		rec := get(t, h, "GET", p, nil)
		if rec.Code != 404 {
			t.Errorf("GET %s: %d", p, rec.Code)
		}
		checkHeaders(t, p, rec.Header())
	}
	if rec := get(t, h, "POST", "/admin/", nil); rec.Code != 405 || rec.Header().Get("Allow") != "GET, HEAD" {
		t.Fatalf("POST: %d %v", rec.Code, rec.Header())
	}
}

func checkHeaders(t *testing.T, path string, hd http.Header) {
	t.Helper()
	want := map[string]string{
		"Content-Security-Policy": console.CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
		"X-Frame-Options": "DENY", "Cross-Origin-Opener-Policy": "same-origin",
	}
	for k, v := range want {
		if hd.Get(k) != v {
			t.Errorf("%s: %s %q", path, k, hd.Get(k))
		}
	}
}

// TestCSPIsStrict: same origin only, no unsafe-*, no framing.
func TestCSPIsStrict(t *testing.T) {
	for _, must := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'",
		"frame-ancestors 'none'", "base-uri 'none'", "form-action 'none'"} {
		if !strings.Contains(console.CSP, must) {
			t.Errorf("CSP lacks %q", must)
		}
	}
	for _, never := range []string{"unsafe", "http:", "https:", "*", "data: 'self'"} {
		if strings.Contains(strings.ReplaceAll(console.CSP, "img-src 'self' data:", ""), never) {
			t.Errorf("CSP allows %q", never)
		}
	}
}

// TestPageNeedsNoInlineCodeOrOtherOrigin: no inline script, no style
// attribute, no event-handler attribute, no URL of another origin, no
// innerHTML or eval in our code (the CSP would refuse the first three;
// the rest keeps user text out of markup).
func TestPageNeedsNoInlineCodeOrOtherOrigin(t *testing.T) {
	inlineScript := regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]`)
	for _, name := range []string{"index.html"} {
		b, _ := os.ReadFile("static/" + name)
		s := string(b)
		if inlineScript.MatchString(s) || regexp.MustCompile(`\sstyle=|\son[a-z]+=|<style`).MatchString(s) {
			t.Errorf("%s has inline script, style or handlers", name)
		}
	}
	files, _ := filepath.Glob("static/*")
	for _, p := range files {
		b, _ := os.ReadFile(p)
		s := strings.ReplaceAll(string(b), `xmlns="http://www.w3.org/2000/svg"`, "") // a namespace name, not a fetch
		if regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/`).MatchString(s) {
			t.Errorf("%s names another origin", p)
		}
		if strings.HasSuffix(p, ".js") && regexp.MustCompile(`innerHTML|outerHTML\s*=|eval\(|new Function|setAttribute\('style'|document\.write|localStorage|document\.cookie`).MatchString(s) {
			t.Errorf("%s uses innerHTML, eval, inline styles, localStorage or cookies", p)
		}
	}
}

// TestVendoredUPlotMatchesTheLockFile: the vendored files are the version
// package-lock.json pins (scripts/vendor-console.sh writes VERSIONS).
func TestVendoredUPlotMatchesTheLockFile(t *testing.T) {
	lock, err := os.ReadFile("package-lock.json")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`"node_modules/uplot":\s*\{\s*"version":\s*"([0-9.]+)"`).FindSubmatch(lock)
	if m == nil {
		t.Fatal("uplot not in package-lock.json")
	}
	versions, _ := os.ReadFile("static/vendor/VERSIONS")
	if !strings.HasPrefix(string(versions), "uPlot "+string(m[1])+" ") {
		t.Fatalf("vendored %q, lock file %s: run make console-vendor", versions, m[1])
	}
	js, _ := os.ReadFile("static/vendor/uPlot.iife.min.js")
	if len(js) < 10000 || !strings.Contains(string(js), "uPlot") {
		t.Fatalf("uPlot.iife.min.js: %d bytes", len(js))
	}
}
