package broker

import "github.com/coder/websocket"

// CloseReason is why a session ended. Each maps 1:1 to a metric label, a
// websocket close code and a close frame reason.
type CloseReason uint8

// Close reasons.
const (
	reasonNone CloseReason = iota
	// ReasonClientClosed: the client sent a close frame.
	ReasonClientClosed
	// ReasonConnLost: the socket failed or was closed without a handshake.
	ReasonConnLost
	// ReasonIdle: no client frame for IdleTimeout.
	ReasonIdle
	// ReasonPingTimeout: no pong for PongTimeout.
	ReasonPingTimeout
	// ReasonLifetime: the connection reached Lifetime.
	ReasonLifetime
	// ReasonTooBig: an inbound frame exceeded ReadLimit.
	ReasonTooBig
	// ReasonBinary: the client sent a binary frame.
	ReasonBinary
	// ReasonRateLimit: repeated RATE_LIMITED refusals.
	ReasonRateLimit
	// ReasonQuota: a key quota was used up.
	ReasonQuota
	// ReasonKeyRevoked, ReasonKeyInactive, ReasonKeyExpired: the key
	// stopped being valid.
	ReasonKeyRevoked
	ReasonKeyInactive
	ReasonKeyExpired
	// ReasonSlowConsumer: the send queue overflowed.
	ReasonSlowConsumer
	// ReasonDrain: the node is shutting down.
	ReasonDrain
	// ReasonWriteError: a socket write failed or timed out.
	ReasonWriteError
	numReasons
)

type reasonInfo struct {
	label string
	code  websocket.StatusCode
	text  string
}

var reasonTable = [numReasons]reasonInfo{
	reasonNone:         {"none", websocket.StatusNormalClosure, ""},
	ReasonClientClosed: {"client_closed", websocket.StatusNormalClosure, ""},
	ReasonConnLost:     {"conn_lost", websocket.StatusAbnormalClosure, ""},
	ReasonIdle:         {"idle_timeout", websocket.StatusNormalClosure, "idle timeout"},
	ReasonPingTimeout:  {"ping_timeout", websocket.StatusGoingAway, "ping timeout"},
	ReasonLifetime:     {"lifetime", websocket.StatusGoingAway, "lifetime exceeded"},
	ReasonTooBig:       {"frame_too_big", websocket.StatusMessageTooBig, "frame too big"},
	ReasonBinary:       {"binary_frame", websocket.StatusUnsupportedData, "binary frames not supported"},
	ReasonRateLimit:    {"rate_limit", websocket.StatusPolicyViolation, "rate limit exceeded"},
	ReasonQuota:        {"quota_exceeded", websocket.StatusPolicyViolation, "quota exceeded"},
	ReasonKeyRevoked:   {"key_revoked", websocket.StatusPolicyViolation, "api key revoked"},
	ReasonKeyInactive:  {"key_inactive", websocket.StatusPolicyViolation, "api key deactivated"},
	ReasonKeyExpired:   {"key_expired", websocket.StatusPolicyViolation, "api key expired"},
	ReasonSlowConsumer: {"slow_consumer", websocket.StatusTryAgainLater, "slow consumer"},
	ReasonDrain:        {"drain", websocket.StatusGoingAway, "going away"},
	ReasonWriteError:   {"write_error", websocket.StatusAbnormalClosure, ""},
}

// String returns the reason's metric label.
func (r CloseReason) String() string {
	if r >= numReasons {
		return "unknown"
	}
	return reasonTable[r].label
}

// Code returns the websocket close code sent for the reason.
func (r CloseReason) Code() websocket.StatusCode { return reasonTable[r%numReasons].code }

// Text returns the close frame's reason text.
func (r CloseReason) Text() string { return reasonTable[r%numReasons].text }

// DropReason is why a frame queued (or offered) to a session was thrown
// away instead of written. Each maps 1:1 to a label of
// floodgate_frames_dropped_total.
type DropReason uint8

// Drop reasons.
const (
	// DropQueueFull: the frame that found the send queue full.
	DropQueueFull DropReason = iota
	// DropSlowConsumerClose: the backlog thrown away when a slow consumer
	// is closed.
	DropSlowConsumerClose
	// DropClosing: frames offered to, or still queued in, a session that
	// is closing.
	DropClosing
	// DropConflated: a conflatable frame replaced by a newer one of its
	// channel while the session lagged.
	DropConflated
	numDropReasons
)

var dropLabels = [numDropReasons]string{
	DropQueueFull:         "queue_full",
	DropSlowConsumerClose: "slow_consumer_close",
	DropClosing:           "closing",
	DropConflated:         "conflated",
}

// String returns the metric label.
func (r DropReason) String() string {
	if r >= numDropReasons {
		return "unknown"
	}
	return dropLabels[r]
}
