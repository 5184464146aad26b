package fanout

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// EmbeddedOptions configures an in-process NATS server.
type EmbeddedOptions struct {
	// Listen is host:port for NATS clients (publishers connect here).
	// Port 0 or -1 picks a free port. Defaults to "127.0.0.1:4223".
	Listen string
	// StoreDir enables JetStream in that directory when non-empty.
	// Defaults to off.
	StoreDir string
	// ReadyTimeout bounds the wait for the server to accept connections.
	// Defaults to 5s.
	ReadyTimeout time.Duration
}

// ErrNotReady is returned when the embedded server did not start in time.
var ErrNotReady = errors.New("fanout: embedded NATS server not ready")

// StartEmbedded starts nats-server in this process and waits until it
// accepts connections. Call Shutdown and WaitForShutdown on the result to
// stop it; ClientURL tells clients where to connect.
func StartEmbedded(opts EmbeddedOptions) (*server.Server, error) {
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:4223"
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 5 * time.Second
	}
	host, portStr, err := net.SplitHostPort(opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("fanout: embedded listen %q: %w", opts.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("fanout: embedded listen %q: bad port", opts.Listen)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	sopts := &server.Options{
		Host:                  host,
		Port:                  port,
		NoLog:                 true,
		NoSigs:                true,
		MaxPayload:            1 << 20,
		JetStream:             opts.StoreDir != "",
		StoreDir:              opts.StoreDir,
		DisableShortFirstPing: true,
	}
	s, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("fanout: embedded NATS: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(opts.ReadyTimeout) {
		s.Shutdown()
		return nil, ErrNotReady
	}
	return s, nil
}
