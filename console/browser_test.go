//go:build browser

package console_test

// The console in a real browser: headless Chromium (Debian's
// /usr/bin/chromium, or $CHROMIUM) driven by chromedp against a real
// `floodgate serve --demo-feed --admin-token ...` child process. Run with
// `make test-browser`; SCREENSHOTS=docs/img (make console-screenshots)
// saves the overview and keys screenshots there.

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"
	"github.com/mr-tron/base58"
)

const browserToken = "browser-test-admin-token-0123456789"

// serveProc is a running floodgate serve child process.
type serveProc struct {
	cmd           *exec.Cmd
	wsURL, apiURL string
	exited        chan struct{}
	mu            sync.Mutex
	logTail       []string
}

func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "floodgate")
	out, err := exec.Command("go", "build", "-o", bin, "floodgate/cmd/floodgate").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func startServe(t *testing.T, bin string) *serveProc {
	t.Helper()
	cmd := exec.Command(bin, "serve", "--demo-feed", "--admin-token", browserToken,
		"--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0", "--embedded-nats-listen", "127.0.0.1:0",
		"--data-dir", t.TempDir(), "--node-id", "browser-node", "--log-format", "json", "--shutdown-grace", "0s")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &serveProc{cmd: cmd, exited: make(chan struct{})}
	serving := make(chan map[string]any, 1)
	go func() {
		defer close(p.exited)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.logTail = append(p.logTail, line)
			if len(p.logTail) > 50 {
				p.logTail = p.logTail[1:]
			}
			p.mu.Unlock()
			var ev map[string]any
			if json.Unmarshal([]byte(line), &ev) == nil && ev["message"] == "floodgate serving" {
				select {
				case serving <- ev:
				default:
				}
			}
		}
		_ = cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-p.exited
		}
	})
	select {
	case ev := <-serving:
		p.wsURL = "ws://" + ev["listen"].(string) + "/ws"
		p.apiURL = "http://" + ev["api_listen"].(string)
	case <-p.exited:
		t.Fatalf("floodgate exited before serving:\n%s", p.tail())
	case <-time.After(20 * time.Second):
		t.Fatalf("floodgate did not serve within 20 s:\n%s", p.tail())
	}
	return p
}

func (p *serveProc) tail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.logTail, "\n")
}

// wsClient is a websocket client subscribed to a demo stream; closed
// reports how its connection ended.
type wsClient struct {
	conn   *websocket.Conn
	closed chan error
}

func dialClient(t *testing.T, ctx context.Context, url, key string, sub string) *wsClient {
	t.Helper()
	opts := &websocket.DialOptions{}
	if key != "" {
		opts.HTTPHeader = http.Header{"PF-API-KEY": {key}}
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(dctx, url, opts)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	c.SetReadLimit(1 << 20)
	if err := c.Write(dctx, websocket.MessageText, []byte(sub)); err != nil {
		t.Fatal(err)
	}
	w := &wsClient{conn: c, closed: make(chan error, 1)}
	go func() {
		for {
			if _, _, err := c.Read(ctx); err != nil {
				w.closed <- err
				return
			}
		}
	}()
	t.Cleanup(func() {
		_ = c.CloseNow()
		<-w.closed
	})
	return w
}

// pageErrors collects JavaScript exceptions and console errors.
type pageErrors struct {
	mu    sync.Mutex
	errs  []string
	allow *regexp.Regexp // expected network errors, while set
}

func (p *pageErrors) add(s string, network bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if network && p.allow != nil && p.allow.MatchString(s) {
		return
	}
	p.errs = append(p.errs, s)
}

func (p *pageErrors) expect(re *regexp.Regexp) {
	p.mu.Lock()
	p.allow = re
	p.mu.Unlock()
}

func (p *pageErrors) check(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.errs {
		t.Errorf("browser error: %s", e)
	}
	p.errs = nil
}

func chromiumPath(t *testing.T) string {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium not found (CI installs Debian's chromium)")
	}
	t.Skip("chromium not found: apt-get install chromium")
	return ""
}

func newBrowser(t *testing.T, errs *pageErrors) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter,AutofillServerCommunication"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 800),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelB(); cancelA() })
	listen := chromedp.Listen(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			desc := d.Text
			if d.Exception != nil {
				desc += " " + d.Exception.Description
			}
			errs.add(fmt.Sprintf("exception: %s at %s:%d", desc, d.URL, d.LineNumber+1), false)
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
				var parts []string
				for _, a := range ev.Args {
					parts = append(parts, string(a.Value)+a.Description)
				}
				errs.add("console."+string(ev.Type)+": "+strings.Join(parts, " "), false)
			}
		case *cdplog.EventEntryAdded:
			if ev.Entry.Level == cdplog.EntryLevelError {
				errs.add(fmt.Sprintf("log (%s): %s %s", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL), ev.Entry.Source == cdplog.EntrySourceNetwork)
			}
		}
	})
	if listen != nil {
		t.Fatalf("start chromium: %v", listen)
	}
	return ctx
}

// run runs actions with a deadline, failing the test with what.
func run(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(c, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// text returns the text content of the first node matching sel.
func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	s, err := chromedp.Run(c, chromedp.Text(chromedp.CSS(sel), chromedp.NodeVisible))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// waitText polls until the text of sel satisfies ok.
func waitText(t *testing.T, ctx context.Context, sel, what string, ok func(string) bool) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		s, err := chromedp.Run(c, chromedp.Text(chromedp.CSS(sel)))
		cancel()
		if err == nil {
			last = s
			if ok(s) {
				return s
			}
		}
		time.Sleep(200 * time.Millisecond) // the page's own polling is what we wait for
	}
	t.Fatalf("%s: %s is %q", what, sel, last)
	return ""
}

func eval[T any](t *testing.T, ctx context.Context, js string, opts ...chromedp.EvaluateOption) T {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, err := chromedp.Run(c, chromedp.Evaluate[T](js, opts...))
	if err != nil {
		t.Fatalf("eval %s: %v", js, err)
	}
	return out
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	buf, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s (%d bytes)", path, len(buf))
}

func TestBrowserConsole(t *testing.T) {
	errs := &pageErrors{}
	bctx := newBrowser(t, errs)
	t.Cleanup(func() {
		if t.Failed() {
			screenshot(t, bctx, "failed.png")
		}
	})
	bin := buildBinary(t)
	p := startServe(t, bin)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// Anonymous clients on the demo market, so deliveries move.
	for _, sub := range []string{
		`{"method":"subscribe","params":{"source":"trades","symbol":"BTC"}}`,
		`{"method":"subscribe","params":{"source":"prices"}}`,
		`{"method":"subscribe","params":{"source":"bbo","symbol":"ETH"}}`,
	} {
		dialClient(t, ctx, p.wsURL, "", sub)
	}

	adminURL := p.apiURL + "/admin/"
	run(t, bctx, "open the console", chromedp.EmulateViewport(1280, 800), chromedp.Navigate(adminURL), chromedp.WaitVisible(chromedp.ID("token")))

	// A wrong token: a clear message, still signed out. Its 401 is the
	// one network error expected.
	errs.expect(regexp.MustCompile(`status of 401`))
	run(t, bctx, "wrong token", chromedp.SendKeys(chromedp.ID("token"), "not-the-admin-token"), chromedp.Click(chromedp.ID("signin-submit")))
	if msg := waitText(t, bctx, "#signin-error", "wrong token message", func(s string) bool { return s != "" }); !strings.Contains(msg, "Wrong admin token") {
		t.Fatalf("wrong token message %q", msg)
	}
	errs.expect(nil)
	if n := eval[int](t, bctx, `sessionStorage.length`); n != 0 {
		t.Fatalf("a refused token was kept: sessionStorage has %d items", n)
	}

	// Sign in; the token is in sessionStorage only, never in the page or URL.
	run(t, bctx, "sign in", chromedp.SendKeys(chromedp.ID("token"), browserToken), chromedp.Click(chromedp.ID("signin-submit")),
		chromedp.WaitVisible(chromedp.ID("tile-deliveries")))
	if eval[bool](t, bctx, `document.documentElement.outerHTML.includes(`+strconv.Quote(browserToken)+`) || location.href.includes(`+strconv.Quote(browserToken)+`)`) {
		t.Fatal("the admin token is in the page or its URL")
	}
	if got := eval[string](t, bctx, `sessionStorage.getItem("floodgate.console.token")`); got != browserToken {
		t.Fatalf("sessionStorage token %q", got)
	}
	if cookies := eval[string](t, bctx, `document.cookie`); cookies != "" {
		t.Fatalf("cookies %q", cookies)
	}

	// The live numbers move: new samples arrive and deliveries are counted.
	first := text(t, bctx, "#tile-updated .value")
	waitText(t, bctx, "#tile-updated .value", "sample time moves", func(s string) bool { return s != first })
	waitText(t, bctx, "#tile-deliveries .value", "deliveries/s", func(s string) bool { v, _ := strconv.ParseFloat(strings.ReplaceAll(s, ",", ""), 64); return v > 0 })
	waitText(t, bctx, "#tile-connections .value", "connections", func(s string) bool { return s == "3" })
	waitText(t, bctx, "#health", "health", func(s string) bool { return strings.Contains(s, "ready") && strings.Contains(s, "NATS: connected") })
	if n := eval[int](t, bctx, `document.querySelectorAll("#chart-deliveries canvas, #chart-connections canvas, #chart-refusals canvas").length`); n != 3 {
		t.Fatalf("%d chart canvases, want 3", n)
	}

	// Create a key: shown once, copied, then gone from the page.
	acct := base58.Encode(ed25519.NewKeyFromSeed(make([]byte, 32)).Public().(ed25519.PublicKey))
	for _, perm := range []string{"clipboard-write", "clipboard-read"} {
		if _, err := chromedp.CallBrowser(bctx, browser.SetPermission, browser.SetPermissionParams{
			Permission: &browser.PermissionDescriptor{Name: perm}, Setting: browser.PermissionSettingGranted, Origin: p.apiURL,
		}); err != nil {
			t.Fatalf("grant %s: %v", perm, err)
		}
	}
	run(t, bctx, "create a key",
		chromedp.Navigate(adminURL+"#/keys"), chromedp.WaitVisible(chromedp.ID("key-create")),
		chromedp.Click(chromedp.ID("key-create")), chromedp.WaitVisible(chromedp.ID("create-account")),
		chromedp.SendKeys(chromedp.ID("create-account"), acct),
		chromedp.SendKeys(chromedp.ID("create-alias"), "browser-bot"),
		chromedp.SendKeys(chromedp.ID("create-category"), "test"),
		chromedp.Click(chromedp.ID("create-submit")),
		chromedp.WaitVisible(chromedp.ID("new-key")))
	key := text(t, bctx, "#new-key")
	prefix, _, ok := strings.Cut(key, "_")
	if !ok || len(prefix) != 8 || len(key) < 20 {
		t.Fatalf("new key %q", key)
	}
	run(t, bctx, "copy the key", chromedp.Click(chromedp.ID("copy-key")))
	if s := waitText(t, bctx, "#copy-state", "copy", func(s string) bool { return s != "" }); s != "Copied." {
		t.Fatalf("copy: %q", s)
	}
	clip := eval[string](t, bctx, `navigator.clipboard.readText()`, chromedp.EvalAwaitPromise, func(p *runtime.EvaluateParams) { p.UserGesture = new(true) })
	if clip != key {
		t.Fatalf("clipboard %q, key %q", clip, key)
	}
	run(t, bctx, "close the key dialog", chromedp.Click(chromedp.ID("key-dialog-done")), chromedp.WaitNotPresent(chromedp.ID("key-dialog")))
	if eval[bool](t, bctx, `document.documentElement.outerHTML.includes(`+strconv.Quote(key)+`)`) {
		t.Fatal("the full key is still in the page after the dialog closed")
	}

	// Find it in the table by its alias.
	run(t, bctx, "search", chromedp.Navigate(adminURL+"#/keys"), chromedp.WaitVisible(chromedp.ID("key-search")),
		chromedp.SendKeys(chromedp.ID("key-search"), "browser-bot"))
	row := fmt.Sprintf(`#keys tr[data-prefix=%q]`, prefix)
	run(t, bctx, "find the key", chromedp.WaitVisible(chromedp.CSS(`#keys-table[data-q="browser-bot"]`)), chromedp.WaitVisible(chromedp.CSS(row)))
	if n := eval[int](t, bctx, `document.querySelectorAll("#keys tbody tr").length`); n != 1 {
		t.Fatalf("search shows %d rows, want 1", n)
	}

	// Change its limits.
	run(t, bctx, "open the key", chromedp.Click(chromedp.CSS(row)), chromedp.WaitVisible(chromedp.ID("act-edit")),
		chromedp.Click(chromedp.ID("act-edit")), chromedp.WaitVisible(chromedp.ID("edit-credits")),
		chromedp.Clear(chromedp.ID("edit-credits")), chromedp.SendKeys(chromedp.ID("edit-credits"), "600"),
		chromedp.Clear(chromedp.ID("edit-maxconns")), chromedp.SendKeys(chromedp.ID("edit-maxconns"), "7"),
		chromedp.Click(chromedp.ID("edit-save")))
	waitText(t, bctx, "#key-detail", "new limits", func(s string) bool {
		return strings.Contains(s, "600 credits/min") && strings.Contains(s, "7 connections")
	})
	stored := adminGet(t, p.apiURL+"/admin/v1/keys/"+prefix)
	if !strings.Contains(stored, `"credits_per_minute":600`) || !strings.Contains(stored, `"max_connections":7`) {
		t.Fatalf("stored key after edit: %s", stored)
	}

	// Narrow it to the market scope and two allowed CIDRs (127.0.0.0/8
	// keeps the test's own clients in; 10.1.2.3/8 is stored masked).
	run(t, bctx, "edit scopes and allowed IPs", chromedp.WaitVisible(chromedp.ID("act-edit")),
		chromedp.Click(chromedp.ID("act-edit")), chromedp.WaitVisible(chromedp.ID("edit-cidrs")),
		chromedp.Click(chromedp.ID("edit-scope-account")),
		chromedp.SetValue(chromedp.ID("edit-cidrs"), "127.0.0.0/8\n\n 10.1.2.3/8 \n"),
		chromedp.Click(chromedp.ID("edit-save")))
	waitText(t, bctx, "#detail-cidrs", "allowed IPs shown", func(s string) bool { return s == "127.0.0.0/8, 10.0.0.0/8" })
	if s := text(t, bctx, "#detail-scopes"); s != "market" {
		t.Fatalf("scopes shown %q, want market", s)
	}
	var keyJSON struct {
		Data struct {
			Scopes       []string `json:"scopes"`
			AllowedCIDRs []string `json:"allowed_cidrs"`
		} `json:"data"`
	}
	stored = adminGet(t, p.apiURL+"/admin/v1/keys/"+prefix)
	if err := json.Unmarshal([]byte(stored), &keyJSON); err != nil ||
		strings.Join(keyJSON.Data.Scopes, ",") != "market" || strings.Join(keyJSON.Data.AllowedCIDRs, ",") != "127.0.0.0/8,10.0.0.0/8" {
		t.Fatalf("stored key after the scopes edit: %s", stored)
	}
	if s := text(t, bctx, "#detail-delivered"); s != "—" && !strings.Contains(s, " messages · ") {
		t.Fatalf("delivered today %q, want — or messages and bytes", s)
	}

	// A bad CIDR: the API's field error next to the textarea, nothing
	// stored. Its 400 is the one network error expected.
	errs.expect(regexp.MustCompile(`status of 400`))
	run(t, bctx, "enter a bad CIDR", chromedp.Click(chromedp.ID("act-edit")), chromedp.WaitVisible(chromedp.ID("edit-cidrs")),
		chromedp.SetValue(chromedp.ID("edit-cidrs"), "127.0.0.0/8\nnot-a-cidr"),
		chromedp.Click(chromedp.ID("edit-save")))
	if msg := waitText(t, bctx, "#edit-cidrs-error", "CIDR field error", func(s string) bool { return s != "" }); !strings.Contains(msg, `line 2 ("not-a-cidr") is not a CIDR`) {
		t.Fatalf("CIDR field error %q", msg)
	}
	errs.expect(nil)
	if s := adminGet(t, p.apiURL+"/admin/v1/keys/"+prefix); !strings.Contains(s, `"allowed_cidrs":["127.0.0.0/8","10.0.0.0/8"]`) {
		t.Fatalf("stored key after the refused edit: %s", s)
	}
	run(t, bctx, "cancel the edit", chromedp.Click(chromedp.CSS(`#edit-form .actions button[type=button]`)), chromedp.WaitNotPresent(chromedp.ID("edit-form")))

	// More keys, as an operator's list has them, and one that floods.
	for i, body := range []string{
		`{"account":"` + acct + `","alias":"market-maker-1","category":"production","limits":{"credits_per_minute":1200}}`,
		`{"account":"` + acct2(1) + `","alias":"analytics","category":"staging"}`,
		`{"account":"` + acct2(2) + `","alias":"old-bot","category":"production","active":false}`,
	} {
		if st, out := adminDo(t, "POST", p.apiURL+"/admin/v1/keys", body); st != 201 {
			t.Fatalf("create key %d: %d %s", i, st, out)
		}
	}
	_, out := adminDo(t, "POST", p.apiURL+"/admin/v1/keys", `{"account":"`+acct2(3)+`","alias":"flooder","category":"test","limits":{"credits_per_minute":2}}`)
	var flood struct {
		Data struct {
			APIKey string `json:"api_key"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(out), &flood); err != nil || flood.Data.APIKey == "" {
		t.Fatalf("flooder key: %s", out)
	}
	fc := dialClient(t, ctx, p.wsURL, flood.Data.APIKey, `{"method":"ping"}`)
	for range 6 {
		_ = fc.conn.Write(ctx, websocket.MessageText, []byte(`{"method":"ping"}`))
	}

	// A client with the key; the page sees its connection.
	keyed := dialClient(t, ctx, p.wsURL, key, `{"method":"subscribe","params":{"source":"trades","symbol":"ETH"}}`)
	waitText(t, bctx, "#detail-conns", "live connections", func(s string) bool { return s == "1" })
	waitText(t, bctx, "#key-detail", "credits budget", func(s string) bool { return strings.Contains(s, "/ 600 left") })
	// The whole list with the key open, after a reload (the tab keeps
	// its sign-in).
	run(t, bctx, "reload", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(row)), chromedp.WaitVisible(chromedp.ID("detail-conns")))
	waitText(t, bctx, "#detail-conns", "live connections after reload", func(s string) bool { return s == "1" })
	if n := eval[int](t, bctx, `document.querySelectorAll("#keys tbody tr").length`); n != 5 {
		t.Fatalf("the list shows %d keys, want 5", n)
	}
	screenshot(t, bctx, "console-keys.png")

	// Revoke, with its confirm step; the client is closed 1008.
	run(t, bctx, "revoke", chromedp.Click(chromedp.ID("act-revoke")), chromedp.WaitVisible(chromedp.ID("confirm-yes")))
	if s := text(t, bctx, "#confirm"); !strings.Contains(s, "cannot be undone") {
		t.Fatalf("confirm step %q", s)
	}
	run(t, bctx, "confirm revoke", chromedp.Click(chromedp.ID("confirm-yes")))
	waitText(t, bctx, "#key-detail h2", "revoked status", func(s string) bool { return strings.Contains(s, "revoked") })
	select {
	case err := <-keyed.closed:
		var ce websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.StatusPolicyViolation || ce.Reason != "api key revoked" {
			t.Fatalf("keyed client ended with %v, want 1008 api key revoked", err)
		}
		keyed.closed <- err // for its cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("the revoked key's client is still connected after 10 s")
	}

	// The other pages render.
	run(t, bctx, "nodes", chromedp.Navigate(adminURL+"#/nodes"), chromedp.WaitVisible(chromedp.ID("nodes")))
	waitText(t, bctx, "#nodes", "this node listed", func(s string) bool { return strings.Contains(s, "browser-node") })
	run(t, bctx, "audit", chromedp.Navigate(adminURL+"#/audit"), chromedp.WaitVisible(chromedp.ID("audit")))
	waitText(t, bctx, "#audit", "audit log", func(s string) bool {
		return strings.Contains(s, "revoke") && strings.Contains(s, "limits.credits_per_minute") && strings.Contains(s, "create")
	})

	// The overview with the keyed traffic and the refusals of the last minutes.
	run(t, bctx, "overview", chromedp.Navigate(adminURL+"#/overview"), chromedp.WaitVisible(chromedp.ID("top-traffic")))
	waitText(t, bctx, "#top-refusals", "top refusals", func(s string) bool { return strings.Contains(s, "RATE_LIMITED") })
	waitText(t, bctx, "#top-traffic", "top traffic", func(s string) bool { return strings.Contains(s, prefix) })
	if os.Getenv("SCREENSHOTS") != "" {
		run(t, bctx, "more samples for the charts", chromedp.Sleep(20*time.Second))
	}
	screenshot(t, bctx, "console-overview.png")

	// Sign out: the token leaves sessionStorage, the sign-in form is back.
	run(t, bctx, "sign out", chromedp.Click(chromedp.ID("signout")), chromedp.WaitVisible(chromedp.ID("token")))
	if n := eval[int](t, bctx, `sessionStorage.length`); n != 0 {
		t.Fatalf("signed out but sessionStorage has %d items", n)
	}
	if !eval[bool](t, bctx, `document.getElementById("app").hidden`) {
		t.Fatal("the console is still shown after sign-out")
	}
	errs.check(t)
}

// acct2 is the base58 account of the test wallet seed n.
func acct2(n byte) string {
	seed := make([]byte, 32)
	seed[0] = n
	return base58.Encode(ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey))
}

func adminDo(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+browserToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func adminGet(t *testing.T, url string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+browserToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	_, _ = bufio.NewReader(resp.Body).WriteTo(&b)
	return b.String()
}
