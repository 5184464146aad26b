package loadtest

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"syscall"
)

var (
	// ErrUnsupportedScheme is returned by Dial for a URL that is not ws:// or wss://.
	ErrUnsupportedScheme = errors.New("loadtest: url scheme must be ws or wss")
	// ErrHandshake is matched by every *HandshakeError.
	ErrHandshake = errors.New("loadtest: websocket upgrade refused")
	// ErrProtocol is returned by ReadMessage for a frame that breaks RFC 6455;
	// the connection has been closed with 1002.
	ErrProtocol = errors.New("loadtest: websocket protocol error")
	// ErrMessageTooLarge is returned by ReadMessage for a message above
	// DialOptions.MaxMessageSize.
	ErrMessageTooLarge = errors.New("loadtest: message too large")
	// ErrConfig is wrapped by Run for an unusable Config.
	ErrConfig = errors.New("loadtest: bad config")
	// ErrThreshold is wrapped by Report.Gate when a limit is exceeded.
	ErrThreshold = errors.New("loadtest: threshold exceeded")
)

// FailReason maps a Dial, subscribe or ReadMessage error to a short, stable
// label for the report: "http 429 TOO_MANY_CONNECTIONS", "close 1013",
// "timeout", "connection refused", "connection reset", "address not
// available", "too many open files", "eof", "protocol error",
// "message too large", "handshake", "closed", "canceled", or "error".
func FailReason(err error) string {
	var he *HandshakeError
	var ce *CloseError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &ce):
		return "close " + strconv.Itoa(ce.Code)
	case errors.As(err, &he):
		if he.Status == 0 || he.Status == 101 {
			return "handshake"
		}
		if he.Code != "" {
			return "http " + strconv.Itoa(he.Status) + " " + he.Code
		}
		return "http " + strconv.Itoa(he.Status)
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, syscall.ETIMEDOUT):
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "connection reset"
	case errors.Is(err, syscall.EADDRNOTAVAIL), errors.Is(err, syscall.EADDRINUSE):
		return "address not available"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "too many open files"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case errors.Is(err, ErrProtocol):
		return "protocol error"
	case errors.Is(err, ErrMessageTooLarge):
		return "message too large"
	case errors.Is(err, net.ErrClosed):
		return "closed"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return "error"
}
