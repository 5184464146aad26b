package node

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"floodgate/internal/proto"

	"github.com/prometheus/client_golang/prometheus"
)

// Pending sockets: a socket accepted on the websocket listener is pending
// until its request headers are read (its handler starts) or it closes.
// That is the phase a client controls (a slow TLS handshake, headers sent
// a byte at a time until ReadHeaderTimeout), so it is the one capped per
// client IP (limits.node.max_pending_per_ip; IPv6 by /64; trusted proxies
// exempt). Once the handler runs, the upgrade or the refusal is the
// node's own bounded work, and the socket no longer counts.

// Lingering of refused sockets: the refusal is written and the write side
// shut (FIN), and the socket is closed a little later by the listener's
// reaper goroutine, so the client reads the 429 before the close rather
// than a reset.
const (
	refuseLinger    = 250 * time.Millisecond
	maxLingering    = 1024 // beyond this many, a refused socket is closed at once
	refuseWriteWait = 100 * time.Millisecond
)

// refusedPending is written on a refused socket (plain TCP only: under
// TLS the socket is closed without a word).
var refusedPending = func() []byte {
	body := `{"error":"too many unfinished connections from this IP","code":"` + proto.TooManyPending + `"}` + "\n"
	return []byte("HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n" +
		"Connection: close\r\nRetry-After: 1\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}()

// pendingListener wraps the websocket listener's TCP listener (under TLS,
// when TLS is on): Accept refuses a socket whose IP already has the
// maximum of pending ones; the server's ConnState and the handler's start
// release a socket (release, via the request's context).
type pendingListener struct {
	net.Listener

	// Immutable after newPendingListener
	trusted []netip.Prefix
	tls     bool
	refused prometheus.Counter

	// Atomics
	max atomic.Int64 // limits.node.max_pending_per_ip; Reload changes it

	// Guarded by mu
	mu     sync.Mutex
	conns  map[net.Conn]netip.Addr // pending sockets -> their IP key
	counts map[netip.Addr]int

	// The reaper: refused sockets wait in linger (in the order they were
	// refused, so their deadlines are ordered) until reap closes them.
	linger    chan lingering
	stop      chan struct{}
	reaped    chan struct{}
	closeOnce sync.Once
}

// lingering is a refused socket and when to close it.
type lingering struct {
	c     net.Conn
	until time.Time
}

func newPendingListener(ln net.Listener, max int, trusted []netip.Prefix, overTLS bool, reg prometheus.Registerer) *pendingListener {
	l := &pendingListener{
		Listener: ln, trusted: trusted, tls: overTLS,
		conns: make(map[net.Conn]netip.Addr), counts: make(map[netip.Addr]int),
		linger: make(chan lingering, maxLingering), stop: make(chan struct{}), reaped: make(chan struct{}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "floodgate", Name: "ws_pending_refused_total",
			Help: "Sockets refused on the websocket listener because their IP had max_pending_per_ip sockets without a request yet.",
		}),
	}
	l.max.Store(int64(max))
	reg.MustRegister(l.refused, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "floodgate", Name: "ws_pending_sockets",
		Help: "Sockets on the websocket listener that have not sent a whole request yet (not counting trusted proxies).",
	}, func() float64 {
		l.mu.Lock()
		defer l.mu.Unlock()
		return float64(len(l.conns))
	}))
	go l.reap()
	return l
}

// reap closes the lingering sockets when their time comes, until Close;
// then it closes the rest at once.
func (l *pendingListener) reap() {
	defer close(l.reaped)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			for {
				select {
				case e := <-l.linger:
					_ = e.c.Close()
				default:
					return
				}
			}
		case e := <-l.linger:
			if d := time.Until(e.until); d > 0 {
				t.Reset(d)
				select {
				case <-t.C:
				case <-l.stop:
				}
			}
			_ = e.c.Close()
		}
	}
}

// pendingKey is the IP a socket counts against: the peer, IPv6 by /64.
func pendingKey(c net.Conn) netip.Addr {
	a, ok := c.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return netip.Addr{}
	}
	ip := a.AddrPort().Addr().Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

// Accept returns the next socket within its IP's cap; the others are
// refused without going further.
func (l *pendingListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := pendingKey(c)
		if !key.IsValid() || isTrusted(key, l.trusted) {
			return c, nil
		}
		l.mu.Lock()
		if l.counts[key] >= int(l.max.Load()) {
			l.mu.Unlock()
			l.refuse(c)
			continue
		}
		l.counts[key]++
		l.conns[c] = key
		l.mu.Unlock()
		return c, nil
	}
}

// release ends the pending phase of c (idempotent).
func (l *pendingListener) release(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	key, ok := l.conns[c]
	if !ok {
		return
	}
	delete(l.conns, c)
	if l.counts[key]--; l.counts[key] <= 0 {
		delete(l.counts, key)
	}
}

// connState is the server's ConnState: a closed or hijacked socket is no
// longer pending.
func (l *pendingListener) connState(c net.Conn, s http.ConnState) {
	if s == http.StateClosed || s == http.StateHijacked {
		l.release(c)
	}
}

type pendingConnKey struct{}

// connContext is the server's ConnContext: it keeps the socket in the
// request's context for releaseRequest.
func (l *pendingListener) connContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, pendingConnKey{}, c)
}

// releaseRequest releases the socket of r: its request is read.
func (l *pendingListener) releaseRequest(r *http.Request) {
	if c, ok := r.Context().Value(pendingConnKey{}).(net.Conn); ok {
		l.release(c)
	}
}

// refuse answers 429 TOO_MANY_PENDING on a plain socket and closes it a
// little later (or at once under TLS, or when too many linger).
func (l *pendingListener) refuse(c net.Conn) {
	l.refused.Inc()
	tc, ok := c.(*net.TCPConn)
	if l.tls || !ok {
		_ = c.Close()
		return
	}
	_ = c.SetWriteDeadline(time.Now().Add(refuseWriteWait))
	if _, err := c.Write(refusedPending); err != nil {
		_ = c.Close()
		return
	}
	_ = tc.CloseWrite()
	select {
	case l.linger <- lingering{c: c, until: time.Now().Add(refuseLinger)}:
	default: // too many lingering already
		_ = c.Close()
	}
}

// Close closes the listener, stops the reaper and closes every lingering
// refused socket.
func (l *pendingListener) Close() error {
	err := l.Listener.Close()
	l.closeOnce.Do(func() {
		close(l.stop)
		<-l.reaped
	})
	return err
}

// setMax changes the cap (config reload); sockets already accepted stay.
func (l *pendingListener) setMax(n int) { l.max.Store(int64(n)) }
