// Package wsframe encodes the server side of RFC 6455 frame headers.
//
// Floodgate builds every outbound market message as a complete websocket
// frame once per node (header and payload in one slice) so that each
// session's writer only copies bytes. Server frames are never masked, so a
// header is 2, 4 or 10 bytes and depends only on the opcode and the payload
// length.
//
// Concurrency: the functions are pure and safe for concurrent use.
//
// Hot path: AppendHeader allocates only when dst lacks capacity.
package wsframe

// Opcodes used by Floodgate's writer.
const (
	OpText  byte = 0x1
	OpClose byte = 0x8
	OpPing  byte = 0x9
	OpPong  byte = 0xA
)

// RSV1 is the first reserved bit of a frame's first byte: set on messages
// compressed with permessage-deflate (RFC 7692).
const RSV1 byte = 0x40

// MaxHeaderLen is the largest header AppendHeader writes.
const MaxHeaderLen = 10

// HeaderLen returns the header size for a payload of n bytes.
func HeaderLen(n int) int {
	switch {
	case n <= 125:
		return 2
	case n <= 0xFFFF:
		return 4
	default:
		return 10
	}
}

// AppendHeader appends the header of a final, unmasked frame with the
// given opcode and payload length n.
func AppendHeader(dst []byte, op byte, n int) []byte {
	b0 := 0x80 | op
	switch {
	case n <= 125:
		return append(dst, b0, byte(n))
	case n <= 0xFFFF:
		return append(dst, b0, 126, byte(n>>8), byte(n))
	default:
		u := uint64(n)
		return append(dst, b0, 127,
			byte(u>>56), byte(u>>48), byte(u>>40), byte(u>>32),
			byte(u>>24), byte(u>>16), byte(u>>8), byte(u))
	}
}
