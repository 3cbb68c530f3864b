package gateway

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"net"
	"testing"
)

// RFC 8448 §3 (simple 1-RTT handshake): the server's handshake traffic
// secret and the key and IV derived from it.
func TestTLS13ExpandLabelRFC8448(t *testing.T) {
	secret, _ := hex.DecodeString("b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38")
	key, err := expandLabel(sha256.New, secret, "key", 16)
	if err != nil {
		t.Fatal(err)
	}
	iv, err := expandLabel(sha256.New, secret, "iv", 12)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := hex.EncodeToString(key), "3fce516009c21727d0f2e4e86ee403bc"; got != want {
		t.Errorf("key %s, want %s", got, want)
	}
	if got, want := hex.EncodeToString(iv), "5d313eb2671276ee13000b30"; got != want {
		t.Errorf("iv %s, want %s", got, want)
	}
}

// tls13Pair is a server record layer and the client's halves that talk
// to it: c seals what the client sends, s opens what the server sent.
type tls13Pair struct {
	r    *tls13Records
	c, s tls13Half
	out  bytes.Buffer // what the server wrote
}

func newTLS13Pair(t testing.TB, suite uint16) *tls13Pair {
	t.Helper()
	cs := bytes.Repeat([]byte{1}, tls13SuiteByID(suite).hash().Size())
	ss := bytes.Repeat([]byte{2}, len(cs))
	r, err := newTLS13Records(suite, cs, ss, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := &tls13Pair{r: r}
	if err := p.c.setSecret(r.suite, cs); err != nil {
		t.Fatal(err)
	}
	if err := p.s.setSecret(r.suite, ss); err != nil {
		t.Fatal(err)
	}
	return p
}

// send seals content of inner type typ followed by pad zero bytes and
// has the server read the record.
func (p *tls13Pair) send(typ byte, content []byte, pad int) ([]byte, error) {
	inner := append(bytes.Clone(content), typ)
	return p.read(p.sealInner(append(inner, make([]byte, pad)...)))
}

// sealInner seals an inner plaintext given whole (content, type, padding).
func (p *tls13Pair) sealInner(inner []byte) []byte {
	n := len(inner) + tls13AEADOverhead
	hdr := []byte{recordApplicationData, 3, 3, byte(n >> 8), byte(n)}
	nonce := p.c.nonce()
	p.c.seq++
	return p.c.aead.Seal(hdr, nonce[:], inner, hdr)
}

func (p *tls13Pair) read(rec []byte) ([]byte, error) {
	if _, err := checkHeader(rec); err != nil {
		return nil, err
	}
	return p.r.readRecord(&p.out, nil, rec)
}

// serverRecords opens what the server wrote since the last call.
func (p *tls13Pair) serverRecords(t *testing.T) (types []byte, contents [][]byte) {
	t.Helper()
	b := p.out.Bytes()
	for len(b) > 0 {
		n := recordHeaderLen + (int(b[3])<<8 | int(b[4]))
		plain, typ, alert := p.s.open(nil, b[:n])
		if alert != 0 {
			t.Fatalf("a server record does not open: alert %d", alert)
		}
		types, contents = append(types, typ), append(contents, plain)
		if typ == recordHandshake && len(plain) == 5 && plain[0] == handshakeTypeKeyUpdate {
			if err := p.s.update(p.r.suite); err != nil {
				t.Fatal(err)
			}
		}
		b = b[n:]
	}
	p.out.Reset()
	return types, contents
}

func wantAlert(t *testing.T, err error, alert byte) {
	t.Helper()
	var a alertError
	if !errors.As(err, &a) || byte(a) != alert {
		t.Fatalf("got %v, want alert %d", err, alert)
	}
}

// TestTLS13Records: what a TLS 1.3 server's record layer takes and
// refuses after the handshake, for each cipher suite.
func TestTLS13Records(t *testing.T) {
	for _, suite := range []uint16{tls.TLS_AES_128_GCM_SHA256, tls.TLS_AES_256_GCM_SHA384, tls.TLS_CHACHA20_POLY1305_SHA256} {
		t.Run(tls.CipherSuiteName(suite), func(t *testing.T) {
			t.Run("data and padding", func(t *testing.T) {
				p := newTLS13Pair(t, suite)
				for _, pad := range []int{0, 1, 300} {
					got, err := p.send(recordApplicationData, []byte("hello"), pad)
					if err != nil || string(got) != "hello" {
						t.Fatalf("pad %d: %q, %v", pad, got, err)
					}
				}
				full := bytes.Repeat([]byte("x"), maxPlaintext)
				if got, err := p.send(recordApplicationData, full, 0); err != nil || !bytes.Equal(got, full) {
					t.Fatalf("a full record: %d bytes, %v", len(got), err)
				}
			})
			t.Run("oversized plaintext", func(t *testing.T) {
				p := newTLS13Pair(t, suite)
				_, err := p.send(recordApplicationData, make([]byte, maxPlaintext+1), 0)
				wantAlert(t, err, alertRecordOverflow)
			})
			t.Run("only padding", func(t *testing.T) {
				p := newTLS13Pair(t, suite)
				_, err := p.read(p.sealInner(make([]byte, 10)))
				wantAlert(t, err, alertUnexpectedMessage)
			})
			t.Run("tampered", func(t *testing.T) {
				p := newTLS13Pair(t, suite)
				rec, _ := p.c.seal(nil, recordApplicationData, []byte("hello"))
				rec[7] ^= 1
				_, err := p.read(rec)
				wantAlert(t, err, alertBadRecordMAC)
			})
			t.Run("replayed", func(t *testing.T) {
				p := newTLS13Pair(t, suite)
				rec, _ := p.c.seal(nil, recordApplicationData, []byte("hello"))
				if _, err := p.read(rec); err != nil {
					t.Fatal(err)
				}
				_, err := p.read(rec)
				wantAlert(t, err, alertBadRecordMAC)
			})
			t.Run("headers", func(t *testing.T) {
				p := newTLS13Pair(t, suite)
				_, err := p.read([]byte{recordChangeCipherSpec, 3, 3, 0, 1, 1})
				wantAlert(t, err, alertUnexpectedMessage)
				_, err = p.read([]byte{recordHandshake, 3, 3, 0, 5, handshakeTypeKeyUpdate, 0, 0, 1, 0})
				wantAlert(t, err, alertUnexpectedMessage)
				_, err = checkHeader([]byte{recordApplicationData, 3, 1, 0, 20})
				wantAlert(t, err, alertProtocolVersion)
				_, err = checkHeader([]byte{recordApplicationData, 3, 3, (maxCiphertextTLS13 + 1) >> 8, (maxCiphertextTLS13 + 1) & 0xff})
				wantAlert(t, err, alertRecordOverflow)
			})
			t.Run("alerts", func(t *testing.T) {
				p := newTLS13Pair(t, suite)
				if got, err := p.send(recordAlert, []byte{1, alertUserCanceled}, 0); got != nil || err != nil {
					t.Fatalf("user_canceled: %q, %v", got, err)
				}
				_, err := p.send(recordAlert, []byte{2, 40, 0}, 0)
				wantAlert(t, err, alertUnexpectedMessage)
				p = newTLS13Pair(t, suite)
				if _, err := p.send(recordAlert, []byte{1, alertCloseNotify}, 0); !errors.Is(err, errTLSPeerClosed) {
					t.Fatalf("close_notify: %v", err)
				}
				p = newTLS13Pair(t, suite)
				if _, err := p.send(recordAlert, []byte{2, 40}, 0); !errors.Is(err, errTLSPeerClosed) {
					t.Fatalf("handshake_failure: %v", err)
				}
			})
			t.Run("empty records", func(t *testing.T) {
				p := newTLS13Pair(t, suite)
				for i := range maxUselessRecords {
					if got, err := p.send(recordApplicationData, nil, 0); got != nil || err != nil {
						t.Fatalf("empty record %d: %q, %v", i, got, err)
					}
				}
				if _, err := p.send(recordApplicationData, []byte("x"), 0); err != nil {
					t.Fatal(err) // data resets the count
				}
				for range maxUselessRecords {
					_, _ = p.send(recordApplicationData, nil, 0)
				}
				_, err := p.send(recordApplicationData, nil, 0)
				wantAlert(t, err, alertUnexpectedMessage)
			})
			t.Run("key update", func(t *testing.T) {
				p := newTLS13Pair(t, suite)
				// Not requested: only the client's key changes.
				if _, err := p.send(recordHandshake, []byte{handshakeTypeKeyUpdate, 0, 0, 1, 0}, 0); err != nil {
					t.Fatal(err)
				}
				if err := p.c.update(p.r.suite); err != nil {
					t.Fatal(err)
				}
				if got, err := p.send(recordApplicationData, []byte("after"), 0); err != nil || string(got) != "after" {
					t.Fatalf("after a key update: %q, %v", got, err)
				}
				if types, _ := p.serverRecords(t); len(types) != 0 {
					t.Fatalf("the server answered a key update not requested: %v", types)
				}
				// Requested, split over two records: the server sends its
				// own KeyUpdate, then writes under its next key.
				if _, err := p.send(recordHandshake, []byte{handshakeTypeKeyUpdate, 0, 0}, 0); err != nil {
					t.Fatal(err)
				}
				if _, err := p.send(recordHandshake, []byte{1, 1}, 0); err != nil {
					t.Fatal(err)
				}
				if err := p.c.update(p.r.suite); err != nil {
					t.Fatal(err)
				}
				if err := p.r.write(&p.out, []byte("reply")); err != nil {
					t.Fatal(err)
				}
				types, contents := p.serverRecords(t)
				if len(types) != 2 || types[0] != recordHandshake || !bytes.Equal(contents[0], []byte{handshakeTypeKeyUpdate, 0, 0, 1, 0}) ||
					types[1] != recordApplicationData || string(contents[1]) != "reply" {
					t.Fatalf("server records %v %q", types, contents)
				}
				if got, err := p.send(recordApplicationData, []byte("again"), 0); err != nil || string(got) != "again" {
					t.Fatalf("after the second key update: %q, %v", got, err)
				}
			})
			for _, tt := range []struct {
				name    string
				records [][]byte
				alert   byte
			}{
				{"data after key update", [][]byte{{handshakeTypeKeyUpdate, 0, 0, 1, 0, 'x'}}, alertUnexpectedMessage},
				{"key update value", [][]byte{{handshakeTypeKeyUpdate, 0, 0, 1, 2}}, alertDecodeError},
				{"key update length", [][]byte{{handshakeTypeKeyUpdate, 0, 0, 2, 0, 0}}, alertDecodeError},
				{"new session ticket", [][]byte{{4, 0, 0, 1}}, alertUnexpectedMessage},
				{"empty handshake record", [][]byte{{}}, alertUnexpectedMessage},
			} {
				t.Run(tt.name, func(t *testing.T) {
					p := newTLS13Pair(t, suite)
					var err error
					for _, r := range tt.records {
						if _, err = p.send(recordHandshake, r, 0); err != nil {
							break
						}
					}
					wantAlert(t, err, tt.alert)
				})
			}
			t.Run("interleaved handshake", func(t *testing.T) {
				p := newTLS13Pair(t, suite)
				if _, err := p.send(recordHandshake, []byte{handshakeTypeKeyUpdate, 0}, 0); err != nil {
					t.Fatal(err)
				}
				_, err := p.send(recordApplicationData, []byte("x"), 0)
				wantAlert(t, err, alertUnexpectedMessage)
			})
			t.Run("writes", func(t *testing.T) {
				p := newTLS13Pair(t, suite)
				big := bytes.Repeat([]byte("0123456789abcdef"), 2500) // 40,000 bytes: 3 records
				if err := p.r.write(&p.out, big); err != nil {
					t.Fatal(err)
				}
				types, contents := p.serverRecords(t)
				if len(types) != 3 || !bytes.Equal(bytes.Join(contents, nil), big) {
					t.Fatalf("%d records", len(types))
				}
				p.r.sendAlert(&p.out, alertCloseNotify)
				types, contents = p.serverRecords(t)
				if len(types) != 1 || types[0] != recordAlert || !bytes.Equal(contents[0], []byte{1, 0}) {
					t.Fatalf("close_notify: %v %q", types, contents)
				}
				if err := p.r.write(&p.out, []byte("late")); !errors.Is(err, net.ErrClosed) {
					t.Fatalf("a write after close_notify: %v", err)
				}
			})
		})
	}
}

// TestTLS13KeyCapture: the records crypto/tls wrote under the server's
// application key (a session ticket) after those under its handshake key
// count in the sequence numbers; any other order refuses the takeover.
func TestTLS13KeyCapture(t *testing.T) {
	suite := uint16(tls.TLS_AES_128_GCM_SHA256)
	cs, ss := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	s := tls13SuiteByID(suite)
	var hsKey, appKey tls13Half
	if err := hsKey.setSecret(s, bytes.Repeat([]byte{3}, 32)); err != nil {
		t.Fatal(err)
	}
	if err := appKey.setSecret(s, ss); err != nil {
		t.Fatal(err)
	}
	hs1, _ := hsKey.seal(nil, recordHandshake, []byte("finished"))
	hs2, _ := hsKey.seal(nil, recordHandshake, []byte("more"))
	ticket, _ := appKey.seal(nil, recordHandshake, []byte("ticket"))
	line := func(label string, secret []byte) []byte {
		return []byte(label + " " + hex.EncodeToString(make([]byte, 32)) + " " + hex.EncodeToString(secret) + "\n")
	}
	for _, tt := range []struct {
		name    string
		written [][]byte
		seq     uint64
		ok      bool
	}{
		{"no ticket", [][]byte{hs1, hs2}, 0, true},
		{"a ticket", [][]byte{hs1, hs2, ticket}, 1, true},
		{"handshake after ticket", [][]byte{hs1, ticket, hs2}, 0, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			k := &keyCapture{}
			_, _ = k.Write(line("CLIENT_HANDSHAKE_TRAFFIC_SECRET", cs))
			_, _ = k.Write(line(keyLogClientTrafficZero, cs))
			_, _ = k.Write(line(keyLogServerTrafficZero, ss))
			k.wrote(bytes.Join(tt.written, nil))
			r, err := k.records(suite, nil)
			if (err == nil) != tt.ok {
				t.Fatalf("records: %v", err)
			}
			if err == nil && r.out.seq != tt.seq {
				t.Fatalf("write sequence %d, want %d", r.out.seq, tt.seq)
			}
			if k.client != nil || k.server != nil {
				t.Fatal("secrets kept after the takeover")
			}
		})
	}
	if _, err := (&keyCapture{}).records(suite, nil); err == nil {
		t.Fatal("a takeover without secrets")
	}
}

// FuzzTLS13Records feeds a server's TLS 1.3 record layer records sealed
// under the client's key from fuzzed contents: each chunk of the input is
// one record, its first byte choosing the inner type, padding and whether
// a ciphertext byte is flipped. The layer never panics, returns the
// application data of every intact data record until it refuses one, and
// refuses any flipped record.
func FuzzTLS13Records(f *testing.F) {
	f.Add([]byte{0x17, 5, 'h', 'e', 'l', 'l', 'o'})
	f.Add([]byte{0x16, 5, 24, 0, 0, 1, 1, 0x17, 1, 'x'})
	f.Add([]byte{0x16, 3, 24, 0, 0, 0x16, 2, 1, 0, 0x15, 2, 1, 90})
	f.Add([]byte{0x97, 3, 'a', 'b', 'c'})
	f.Add([]byte{0x55, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		p := newTLS13Pair(t, tls.TLS_AES_128_GCM_SHA256)
		for len(data) >= 2 {
			op, n := data[0], min(int(data[1]), len(data)-2)
			content := data[2 : 2+n]
			data = data[2+n:]
			inner := append(bytes.Clone(content), op&0x3f)
			inner = append(inner, make([]byte, int(op>>6)*7)...)
			rec := p.sealInner(inner)
			flipped := op&0x80 != 0 && op&0x40 != 0
			if flipped {
				rec[len(rec)-1-int(op)%(len(content)+1)] ^= 0x20
			}
			got, err := p.read(rec)
			if flipped && err == nil {
				t.Fatal("a flipped record was taken")
			}
			if err == nil && op&0x3f == recordApplicationData && len(content) > 0 && !bytes.Equal(got, content) {
				t.Fatalf("data %q came out as %q", content, got)
			}
			if err != nil {
				return
			}
		}
	})
}

// TestTLS13HotList: a record layer makes its AEADs at its first record
// and is listed; a sweep after a use keeps them, the next sweep without
// one drops them, and the next record makes them again under the same
// keys and sequence numbers.
func TestTLS13HotList(t *testing.T) {
	var hot hotList
	p := newTLS13Pair(t, tls.TLS_AES_128_GCM_SHA256)
	p.r.hot = &hot
	if p.r.in.aead != nil || p.r.out.aead != nil {
		t.Fatal("a new layer has its AEADs")
	}
	echo := func(msg string) {
		t.Helper()
		if got, err := p.send(recordApplicationData, []byte(msg), 0); err != nil || string(got) != msg {
			t.Fatalf("read %q: %q, %v", msg, got, err)
		}
		if err := p.r.write(&p.out, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		if _, contents := p.serverRecords(t); len(contents) != 1 || string(contents[0]) != msg {
			t.Fatalf("wrote %q: %q", msg, contents)
		}
	}
	echo("one")
	if len(hot.layers) != 1 || p.r.in.aead == nil || p.r.out.aead == nil {
		t.Fatalf("after a record: %d listed", len(hot.layers))
	}
	hot.sweep()
	if len(hot.layers) != 1 || p.r.in.aead == nil {
		t.Fatal("a sweep right after a use dropped the AEADs")
	}
	hot.sweep()
	if len(hot.layers) != 0 || p.r.in.aead != nil || p.r.out.aead != nil {
		t.Fatalf("a quiet layer kept its AEADs: %d listed", len(hot.layers))
	}
	echo("two")
	if len(hot.layers) != 1 {
		t.Fatalf("%d listed after the next record", len(hot.layers))
	}
}
