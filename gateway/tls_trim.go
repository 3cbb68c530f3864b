package gateway

import (
	"reflect"
	"unsafe"

	ltls "github.com/lesismal/llib/std/crypto/tls"
)

// The TLS state machine (llib's non-blocking fork of crypto/tls) keeps
// its handshake state for the connection's whole life, though nothing
// reads it once the handshake is complete: Conn.Handshake returns before
// reaching it. That is 5–6 KiB of an idle TLS 1.3 connection: the parsed
// ClientHello with its raw bytes (larger with post-quantum key shares),
// the handshake state machine with its transcript and secrets, and the
// buffer the handshake messages were assembled in. trimHandshake drops
// them. The fields are unexported, hence reflect; TestTrimHandshake fails
// if an llib upgrade renames them.

// handshakeFields hold handshake state only.
var handshakeFields = []string{"clientHello", "hs", "hs13", "certMsg", "certMsgVerified"}

// handshakeBuffer is the buffer of handshake messages; it is empty after
// a complete handshake and allocated again if a post-handshake message
// arrives.
const handshakeBuffer = "hand"

// trimIndex holds the indexes in tls.Conn of handshakeFields and, last,
// of handshakeBuffer; names the pinned version lacks are left out.
var trimIndex = func() [][]int {
	t := reflect.TypeFor[ltls.Conn]()
	var idx [][]int
	for _, name := range append(handshakeFields, handshakeBuffer) {
		if f, ok := t.FieldByName(name); ok {
			switch f.Type.Kind() {
			case reflect.Pointer, reflect.Slice:
				idx = append(idx, f.Index)
			}
		}
	}
	return idx
}()

// trimHandshake releases the handshake state of tc, whose handshake is
// complete. The caller holds the connection's TLS lock.
func trimHandshake(tc *ltls.Conn) {
	v := reflect.ValueOf(tc).Elem()
	for _, i := range trimIndex {
		f := reflect.NewAt(v.FieldByIndex(i).Type(), unsafe.Pointer(v.FieldByIndex(i).UnsafeAddr())).Elem()
		if f.IsNil() {
			continue
		}
		if v.Type().FieldByIndex(i).Name == handshakeBuffer {
			// *[]byte: drop it only if it holds nothing unread.
			if f.Elem().Len() != 0 {
				continue
			}
		}
		f.SetZero()
	}
}
