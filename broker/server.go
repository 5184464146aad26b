package broker

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"floodgate/fanout"
	"floodgate/internal/httpx"
	"floodgate/internal/proto"

	"github.com/coder/websocket"
	"github.com/valyala/fastjson"
)

// ErrClosed is returned by Server methods after Close.
var ErrClosed = errors.New("broker: server closed")

// Subprotocol is the websocket subprotocol Floodgate answers when a client
// offers it (browsers offering a key as "key.<key>" must also offer it).
const Subprotocol = "floodgate.v1"

// Server accepts websocket upgrades and runs sessions. Create it with New
// and stop it with Close.
type Server struct {
	// Immutable after New.
	opts Options
	m    *metrics

	// Pools, safe for concurrent use.
	parsers   fastjson.ParserPool
	replies   replyPool
	readBufs  sync.Pool // *[]byte of ReadLimit+1 bytes, valid while one frame is handled
	writeBufs sync.Pool // *[]byte of WriteBufferSize, valid while a writer runs

	// Atomics.
	draining atomic.Bool
	closed   atomic.Bool

	// Guarded by mu: the live sessions, and what CloseKey, SetKeyScopes
	// and SetKeyExpiry did to each key in the last keyChangeMemory (add
	// applies it to a session admitted before the change: see keyChange).
	mu         sync.Mutex
	sessions   map[*session]struct{}
	keyChanges map[string]keyChange
	active     sync.WaitGroup // one per session, Done when its handler returns

	// Guarded by meterMu: delivery counts of ended sessions not yet taken,
	// by key prefix, and every session's takenMsgs/takenBytes (meter.go).
	meterMu    sync.Mutex
	meterEnded map[string]Delivered

	// Owned by New/Close: the sweeper.
	stopSweep chan struct{}
	sweepDone chan struct{}
}

// New returns a Server and starts its sweeper goroutine; Close stops it.
func New(opts Options) (*Server, error) {
	if opts.Hub == nil || opts.Sources == nil {
		return nil, errors.New("broker: Options.Hub and Options.Sources are required")
	}
	opts.setDefaults()
	s := &Server{
		opts:       opts,
		sessions:   make(map[*session]struct{}),
		keyChanges: make(map[string]keyChange),
		stopSweep:  make(chan struct{}),
		sweepDone:  make(chan struct{}),
	}
	s.m = newMetrics(opts.Registerer, s)
	readSize := opts.ReadLimit + 1
	s.readBufs.New = func() any { b := make([]byte, readSize); return &b }
	writeSize := opts.WriteBufferSize
	s.writeBufs.New = func() any { b := make([]byte, 0, writeSize); return &b }
	go s.sweepLoop()
	return s, nil
}

// recycle returns a written or discarded queue item's pooled reply.
func (s *Server) recycle(it item) {
	if it.reply != nil {
		s.replies.put(it.reply)
	}
}

var (
	refusalDraining = proto.Refusal{Status: http.StatusServiceUnavailable, Code: proto.Draining, Message: "server is draining, reconnect to another node", RetryAfter: time.Second}
	refusalOrigin   = proto.Refusal{Status: http.StatusForbidden, Code: proto.OriginNotAllowed, Message: "origin not allowed"}
	refusalNotWS    = proto.Refusal{Status: http.StatusUpgradeRequired, Code: proto.BadRequest, Message: "websocket upgrade required"}
)

// refuse counts and writes a refusal.
func (s *Server) refuse(w http.ResponseWriter, r *proto.Refusal) {
	s.m.refusals.WithLabelValues(r.Code).Inc()
	r.Write(w)
}

// ServeHTTP handles GET /ws: identity, admission and upgrade; the session
// then runs on its own goroutine, owned by the Server (Close waits for it).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	if s.draining.Load() || s.closed.Load() {
		s.refuse(w, &refusalDraining)
		return
	}
	if !isUpgrade(r) {
		s.refuse(w, &refusalNotWS)
		return
	}
	if !httpx.OriginAllowed(r, s.opts.AllowedOrigins) {
		s.refuse(w, &refusalOrigin)
		return
	}
	id, budget, ref := s.opts.Admitter.Admit(r.Context(), r, now)
	if ref != nil {
		s.refuse(w, ref)
		return
	}
	sess := &session{srv: s, id: id, budget: budget, start: now, remote: r.RemoteAddr, subs: make(map[string]*subscription)}
	sess.writeFn = sess.writeLoop
	sess.metered = s.opts.MeterDelivery && id.KeyPrefix != ""
	sess.lastRead.Store(now.UnixNano())
	sess.lastPong.Store(now.UnixNano())
	if !id.ExpiresAt.IsZero() {
		sess.expires.Store(id.ExpiresAt.UnixNano())
	}
	sess.scopes.Store(uint32(id.Scopes))
	sess.lastPing = now
	// Within the last hour already: the connect notice is the last one.
	sess.expiryNoticed = !id.ExpiresAt.IsZero() && id.ExpiresAt.Sub(now) <= ExpiryLastNotice
	hw := &hijackWriter{ResponseWriter: w, writeTimeout: s.opts.WriteTimeout}
	// permessage-deflate without context takeover: every market frame is
	// compressed once per node (fanout) and our writer sends the same
	// bytes to every compressed session; coder/websocket negotiates and
	// inflates what clients send (pooled readers; readFull's limit applies
	// to the inflated size).
	mode := websocket.CompressionNoContextTakeover
	if s.opts.NoCompression {
		mode = websocket.CompressionDisabled
	}
	ws, err := websocket.Accept(hw, r, &websocket.AcceptOptions{
		Subprotocols:       []string{Subprotocol},
		InsecureSkipVerify: true, // origins are checked above, with a JSON refusal
		CompressionMode:    mode,
		OnPingReceived: func(context.Context, []byte) bool {
			sess.lastRead.Store(time.Now().UnixNano())
			return true
		},
		OnPongReceived: func(context.Context, []byte) {
			sess.lastPong.Store(time.Now().UnixNano())
		},
	})
	if err != nil {
		budget.Release(time.Now())
		s.opts.Logger.Debug().Err(err).Str("ip", id.IP.String()).Msg("upgrade failed")
		return
	}
	// The read loop enforces ReadLimit itself (see readFull), so that an
	// oversize frame gets a clean 1009 close handshake.
	ws.SetReadLimit(-1)
	sess.ws = ws
	sess.compressed = strings.HasPrefix(w.Header().Get("Sec-WebSocket-Extensions"), "permessage-deflate")
	sess.conn = hw.conn
	if !s.add(sess) {
		_ = ws.CloseNow() // closed while upgrading
		budget.Release(time.Now())
		return
	}
	if !id.ExpiresAt.IsZero() && s.opts.ExpiryNotice >= 0 && id.ExpiresAt.Sub(now) <= s.opts.ExpiryNotice {
		// Before the read loop runs: nothing else queues for a session
		// without subscriptions (a drain refuses new sessions in add).
		sess.noticeExpiring(id.ExpiresAt, now)
	}
	// The session runs on its own goroutine and the handler returns, so
	// net/http releases its per-connection state (the request, its 4 KiB
	// buffers, the response writer) and the deep handler stack: about
	// 10 KiB per idle connection.
	go s.run(sess)
}

// isUpgrade reports whether r asks for a websocket upgrade.
func isUpgrade(r *http.Request) bool {
	return r.Method == http.MethodGet && httpx.HasToken(r.Header, "Connection", "upgrade") && httpx.HasToken(r.Header, "Upgrade", "websocket")
}

func (s *Server) add(sess *session) bool {
	s.mu.Lock()
	if s.closed.Load() || s.draining.Load() {
		s.mu.Unlock()
		return false
	}
	s.sessions[sess] = struct{}{}
	s.active.Add(1)
	kc, changed := s.keyChanges[sess.id.KeyPrefix]
	s.mu.Unlock()
	if changed && sess.id.KeyPrefix != "" {
		kc.apply(sess)
	}
	return true
}

// keyChangeMemory is how long the key setters' changes are kept for add:
// longer than any admission-to-add gap (the handshake after a successful
// admission is one write).
const keyChangeMemory = time.Minute

// keyChange is the latest close, scopes and expiry the key setters gave a
// key prefix, each with the time it was given. A setter records its change
// and takes the key's live sessions under one lock, and add registers a
// session and reads the change under the same lock: a session admitted
// before a change (with the key's state before it) either is among the
// sessions the setter changes or gets the change in add. Sessions admitted
// after a change were admitted with the key's new state.
type keyChange struct {
	closeAt  time.Time
	close    CloseReason
	scopesAt time.Time
	scopes   proto.Scopes
	expiryAt time.Time
	expires  int64 // unix ns; 0: never
}

// apply gives sess the parts of kc made at or after its admission.
func (kc *keyChange) apply(sess *session) {
	if !kc.expiryAt.IsZero() && !kc.expiryAt.Before(sess.start) {
		sess.expires.Store(kc.expires)
	}
	if !kc.scopesAt.IsZero() && !kc.scopesAt.Before(sess.start) {
		sess.scopes.Store(uint32(kc.scopes)) // no subscriptions yet: nothing to end
	}
	if !kc.closeAt.IsZero() && !kc.closeAt.Before(sess.start) {
		sess.requestClose(kc.close)
	}
}

// latest is the time of kc's most recent part.
func (kc *keyChange) latest() time.Time {
	t := kc.closeAt
	if kc.scopesAt.After(t) {
		t = kc.scopesAt
	}
	if kc.expiryAt.After(t) {
		t = kc.expiryAt
	}
	return t
}

// keySessions returns the live sessions of the key prefix (none for ""),
// having first recorded change (when not nil) in the prefix's keyChange,
// under the same lock (see keyChange).
func (s *Server) keySessions(prefix string, change func(kc *keyChange, now time.Time)) []*session {
	if prefix == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if change != nil {
		kc := s.keyChanges[prefix]
		change(&kc, time.Now())
		s.keyChanges[prefix] = kc
	}
	var out []*session
	for sess := range s.sessions {
		if sess.id.KeyPrefix == prefix {
			out = append(out, sess)
		}
	}
	return out
}

// forgetKeyChanges drops the key changes older than keyChangeMemory at now
// (the sweeper calls it).
func (s *Server) forgetKeyChanges(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for p, kc := range s.keyChanges {
		if now.Sub(kc.latest()) > keyChangeMemory {
			delete(s.keyChanges, p)
		}
	}
}

// run is the life of an accepted session on its upgrade goroutine.
func (s *Server) run(sess *session) {
	defer s.active.Done()
	kind := sess.id.Kind.String()
	s.m.connections.WithLabelValues(kind).Inc()
	s.m.opened.WithLabelValues(kind).Inc()
	s.opts.Logger.Info().Str("event", "open").Str("identity", sess.id.ID).Str("ip", sess.id.IP.String()).
		Str("key_prefix", sess.id.KeyPrefix).Str("node", s.opts.NodeID).Msg("connection opened")

	readReason := sess.readLoop()

	sess.mu.Lock()
	if sess.closing == reasonNone {
		sess.closing = readReason
	}
	reason := sess.closing
	writing := sess.writing
	sess.mu.Unlock()
	if !writing {
		_ = sess.ws.CloseNow()
	}
	sess.wg.Wait()
	sess.leaveAll()
	// Return pooled replies still queued.
	sess.mu.Lock()
	left := sess.queue
	sess.queue = nil
	sess.mu.Unlock()
	for _, it := range left {
		s.recycle(it)
	}
	s.m.drop(DropClosing, len(left))
	end := time.Now()
	sess.budget.Release(end)

	s.mu.Lock()
	delete(s.sessions, sess)
	s.mu.Unlock()
	s.endMetered(sess)
	s.m.connections.WithLabelValues(kind).Dec()
	s.m.closes.WithLabelValues(reason.String()).Inc()
	s.opts.Logger.Info().Str("event", "close").Str("identity", sess.id.ID).Str("ip", sess.id.IP.String()).
		Str("key_prefix", sess.id.KeyPrefix).Str("node", s.opts.NodeID).
		Dur("duration", end.Sub(sess.start)).Int64("msgs_in", sess.msgsIn.Load()).Int64("msgs_out", sess.msgsOut.Load()).
		Int("close_code", int(reason.Code())).Str("close_reason", reason.String()).Msg("connection closed")
	if s.opts.OnClose != nil {
		s.opts.OnClose(SessionInfo{
			Identity: sess.id, Start: sess.start, End: end,
			MsgsIn: sess.msgsIn.Load(), MsgsOut: sess.msgsOut.Load(),
			CloseCode: int(reason.Code()), CloseReason: reason,
		})
	}
}

// snapshot returns the live sessions.
func (s *Server) snapshot(dst []*session) []*session {
	s.mu.Lock()
	defer s.mu.Unlock()
	for sess := range s.sessions {
		dst = append(dst, sess)
	}
	return dst
}

// Connections returns the number of live sessions.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// Draining reports whether Drain was called.
func (s *Server) Draining() bool { return s.draining.Load() }

// CloseKey closes every session of the key prefix with reason (one of the
// key reasons, ReasonQuota, or any other) and returns how many it closed.
// A session of the key that was admitted before this call but is not live
// yet (its handshake still running) closes itself as it starts (add), so
// a revoke or deactivation racing a new connection never leaves it open.
func (s *Server) CloseKey(prefix string, reason CloseReason) int {
	sessions := s.keySessions(prefix, func(kc *keyChange, now time.Time) { kc.closeAt, kc.close = now, reason })
	for _, sess := range sessions {
		sess.requestClose(reason)
	}
	return len(sessions)
}

// EndSubscriptions ends, on every live session of the key prefix, each
// subscription for which end returns true: the session leaves the channel
// and gets {"channel":"notice","data":{"code":"SUBSCRIPTION_ENDED",
// "source":..,"params":{..},"reason":"<reason>"}}, after which no frame of
// the channel reaches it. The session's subscription count drops and the
// client may subscribe again (whatever refused it then refuses the new
// subscribe). end is called with the session's subscriptions locked, from
// the caller's goroutine; it must not block. It returns how many
// subscriptions it ended. A subscription still replaying (subscribe with
// since) when this runs is not seen.
func (s *Server) EndSubscriptions(prefix string, end func(ch *fanout.Channel) bool, reason string) int {
	n := 0
	for _, sess := range s.keySessions(prefix, nil) {
		n += sess.endSubscriptions(end, reason)
	}
	return n
}

// SetKeyScopes changes the scopes of every live session of the key prefix
// and ends, with SUBSCRIPTION_ENDED reason FORBIDDEN, each subscription
// the new scopes do not allow. Sessions whose scopes do not change are
// left alone; a session still starting gets the new scopes in add. It
// returns how many subscriptions it ended.
func (s *Server) SetKeyScopes(prefix string, sc proto.Scopes) int {
	n := 0
	for _, sess := range s.keySessions(prefix, func(kc *keyChange, now time.Time) { kc.scopesAt, kc.scopes = now, sc }) {
		if sess.scopes.Swap(uint32(sc)) != uint32(sc) {
			n += sess.endSubscriptions(func(ch *fanout.Channel) bool { return !sc.Allows(ch.Source.Private) }, proto.Forbidden)
		}
	}
	return n
}

// SetKeyExpiry moves the expiry of every live session of the key prefix
// (zero: never) and returns how many it updated. Sessions past the new
// expiry are closed at the next sweep; a session still starting gets the
// new expiry in add.
func (s *Server) SetKeyExpiry(prefix string, expiresAt time.Time) int {
	var ns int64
	if !expiresAt.IsZero() {
		ns = expiresAt.UnixNano()
	}
	sessions := s.keySessions(prefix, func(kc *keyChange, now time.Time) { kc.expiryAt, kc.expires = now, ns })
	for _, sess := range sessions {
		sess.expires.Store(ns)
	}
	return len(sessions)
}

// KeyPrefixes returns the distinct key prefixes with live sessions.
func (s *Server) KeyPrefixes() []string {
	seen := make(map[string]struct{})
	var out []string
	for _, sess := range s.snapshot(nil) {
		if p := sess.id.KeyPrefix; p != "" {
			if _, ok := seen[p]; !ok {
				seen[p] = struct{}{}
				out = append(out, p)
			}
		}
	}
	return out
}

// Drain stops accepting upgrades (503 DRAINING), sends every session a
// RECONNECT notice with in_ms = grace, waits grace (or until every session
// has gone), then closes the rest with 1001 "going away" and waits for them
// (at most 10 s more). It returns when every session has ended or the wait
// gave up.
func (s *Server) Drain(grace time.Duration) {
	if !s.draining.CompareAndSwap(false, true) {
		return
	}
	for _, sess := range s.snapshot(nil) {
		sess.notice("RECONNECT", grace)
	}
	s.waitSessions(grace)
	for _, sess := range s.snapshot(nil) {
		sess.requestClose(ReasonDrain)
	}
	s.waitSessions(10 * time.Second)
}

// waitSessions waits until no session is left or d has passed.
func (s *Server) waitSessions(d time.Duration) {
	deadline := time.Now().Add(d)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for s.Connections() > 0 && time.Now().Before(deadline) {
		<-tick.C
	}
}

// Close stops the sweeper, closes every session with 1001 "going away" and
// waits for all session goroutines to end.
func (s *Server) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return ErrClosed
	}
	close(s.stopSweep)
	<-s.sweepDone
	for _, sess := range s.snapshot(nil) {
		sess.requestClose(ReasonDrain)
	}
	s.active.Wait()
	return nil
}
