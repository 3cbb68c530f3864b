package gateway

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"slices"
	"sync"

	"golang.org/x/crypto/chacha20poly1305"
)

// TLS 1.3 record layer of an open connection (RFC 8446 §5).
//
// crypto/tls runs the handshake; a tls.Conn then keeps, for the life of
// the connection, its record and handshake buffers at the size of the
// largest record and message it read (the ClientHello's, about 1.8 KB with
// a post-quantum key share) and its own state: about 6.5 KB of heap per
// idle TLS 1.3 connection, where the record layer below keeps the keys,
// IVs, traffic secrets and sequence numbers of both directions (about 300
// bytes), and their AEADs (about 1.5 KB) only while the connection is
// active (see hotList). Once the handshake is
// complete the tls.Conn is dropped and this code encrypts and decrypts the
// application records with the traffic secrets crypto/tls reported through
// Config.KeyLogWriter, the AEADs of the standard library (AES-GCM) and of
// golang.org/x/crypto (ChaCha20-Poly1305). It handles what a TLS 1.3
// server can receive after the handshake: application data, alerts
// (close_notify, user_canceled, fatal ones), KeyUpdate (answered when the
// client requests it), padding and the inner content type; anything else
// is answered with the alert crypto/tls would send and the connection is
// closed. TLS 1.2 connections stay on their tls.Conn.

// TLS record content types.
const (
	recordChangeCipherSpec = 20
	recordAlert            = 21
	recordHandshake        = 22
	recordApplicationData  = 23
)

// TLS alert descriptions sent or recognized (RFC 8446 §6).
const (
	alertCloseNotify        = 0
	alertUnexpectedMessage  = 10
	alertBadRecordMAC       = 20
	alertRecordOverflow     = 22
	alertDecodeError        = 50
	alertProtocolVersion    = 70
	alertInternalError      = 80
	alertUserCanceled       = 90
	handshakeTypeKeyUpdate  = 24
	maxPlaintext            = 1 << 14
	maxCiphertextTLS13      = maxPlaintext + 256
	maxUselessRecords       = 16 // as crypto/tls: consecutive records that carry no data
	recordHeaderLen         = 5
	tls13AEADOverhead       = 16 // the tag of every TLS 1.3 AEAD
	tls13NonceLen           = 12
	tls13MaxSecretLen       = sha512.Size384
	keyLogClientTrafficZero = "CLIENT_TRAFFIC_SECRET_0"
	keyLogServerTrafficZero = "SERVER_TRAFFIC_SECRET_0"
)

// tls13Suite is what the record layer needs of a TLS 1.3 cipher suite.
type tls13Suite struct {
	id     uint16
	hash   func() hash.Hash
	keyLen int
	aead   func(key []byte) (cipher.AEAD, error)
}

// tls13Suites are the TLS 1.3 cipher suites crypto/tls negotiates.
var tls13Suites = []*tls13Suite{
	{tls.TLS_AES_128_GCM_SHA256, sha256.New, 16, newAESGCM},
	{tls.TLS_AES_256_GCM_SHA384, sha512.New384, 32, newAESGCM},
	{tls.TLS_CHACHA20_POLY1305_SHA256, sha256.New, chacha20poly1305.KeySize, chacha20poly1305.New},
}

func newAESGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// tls13SuiteByID returns the suite of id, nil for a suite that is not
// TLS 1.3's.
func tls13SuiteByID(id uint16) *tls13Suite {
	for _, s := range tls13Suites {
		if s.id == id {
			return s
		}
	}
	return nil
}

// expandLabel is HKDF-Expand-Label of RFC 8446 §7.1 with an empty
// context.
func expandLabel(h func() hash.Hash, secret []byte, label string, n int) ([]byte, error) {
	info := make([]byte, 0, 4+6+len(label))
	info = binary.BigEndian.AppendUint16(info, uint16(n))
	info = append(info, byte(6+len(label)))
	info = append(info, "tls13 "...)
	info = append(info, label...)
	info = append(info, 0)
	return hkdf.Expand(h, secret, string(info), n)
}

// tls13Half is one direction of a TLS 1.3 connection: its traffic secret
// (kept for KeyUpdate), the key and IV derived from it, and the sequence
// number of the next record (RFC 8446 §5.3, §7.3). The AEAD (about 770
// bytes for AES-GCM, with its key schedule and GHASH table) is made from
// the key when a record needs it, and dropped again by the listener's
// sweep once the connection is quiet (see hotList).
type tls13Half struct {
	suite  *tls13Suite
	aead   cipher.AEAD // nil while quiet
	seq    uint64
	iv     [tls13NonceLen]byte
	key    [32]byte
	secret [tls13MaxSecretLen]byte
}

// setSecret keys h with secret, its sequence number back at 0.
func (h *tls13Half) setSecret(s *tls13Suite, secret []byte) error {
	if len(secret) != s.hash().Size() {
		return fmt.Errorf("gateway: tls: traffic secret of %d bytes for suite %04x", len(secret), s.id)
	}
	key, err := expandLabel(s.hash, secret, "key", s.keyLen)
	if err != nil {
		return fmt.Errorf("gateway: tls: key: %w", err)
	}
	iv, err := expandLabel(s.hash, secret, "iv", tls13NonceLen)
	if err != nil {
		return fmt.Errorf("gateway: tls: iv: %w", err)
	}
	h.suite, h.aead, h.seq = s, nil, 0
	clear(h.key[:])
	copy(h.key[:], key)
	clear(key)
	if err := h.ready(); err != nil {
		return err
	}
	copy(h.iv[:], iv)
	clear(h.secret[:])
	copy(h.secret[:], secret)
	return nil
}

// update moves h to the next generation of its traffic secret (KeyUpdate,
// RFC 8446 §7.2).
func (h *tls13Half) update(s *tls13Suite) error {
	n := s.hash().Size()
	next, err := expandLabel(s.hash, h.secret[:n], "traffic upd", n)
	if err != nil {
		return fmt.Errorf("gateway: tls: traffic upd: %w", err)
	}
	err = h.setSecret(s, next)
	clear(next)
	return err
}

// ready makes the AEAD if it was dropped.
func (h *tls13Half) ready() error {
	if h.aead != nil {
		return nil
	}
	aead, err := h.suite.aead(h.key[:h.suite.keyLen])
	if err != nil {
		return fmt.Errorf("gateway: tls: aead: %w", err)
	}
	h.aead = aead
	return nil
}

// nonce returns the per-record nonce: the IV xor the sequence number.
func (h *tls13Half) nonce() [tls13NonceLen]byte {
	n := h.iv
	var seq [8]byte
	binary.BigEndian.PutUint64(seq[:], h.seq)
	for i := range seq {
		n[tls13NonceLen-8+i] ^= seq[i]
	}
	return n
}

// errSeqWrap is a direction that used every sequence number.
var errSeqWrap = errors.New("gateway: tls: sequence number exhausted")

// open decrypts record (header and payload, the outer type application
// data) into dst and returns the content and its inner type, or the alert
// to send.
func (h *tls13Half) open(dst, record []byte) ([]byte, byte, byte) {
	if h.seq == ^uint64(0) || h.ready() != nil {
		return nil, 0, alertInternalError
	}
	nonce := h.nonce()
	plain, err := h.aead.Open(dst, nonce[:], record[recordHeaderLen:], record[:recordHeaderLen])
	if err != nil {
		return nil, 0, alertBadRecordMAC
	}
	h.seq++
	if len(plain) > maxPlaintext+1 {
		return nil, 0, alertRecordOverflow
	}
	i := len(plain) - 1
	for i >= 0 && plain[i] == 0 {
		i-- // padding
	}
	if i < 0 {
		return nil, 0, alertUnexpectedMessage
	}
	return plain[:i], plain[i], 0
}

// seal appends to dst the record of content of inner type typ, at most
// maxPlaintext bytes.
func (h *tls13Half) seal(dst []byte, typ byte, content []byte) ([]byte, error) {
	if h.seq == ^uint64(0) {
		return dst, errSeqWrap
	}
	if err := h.ready(); err != nil {
		return dst, err
	}
	n := len(content) + 1 + tls13AEADOverhead
	start := len(dst)
	dst = slices.Grow(dst, recordHeaderLen+n)
	dst = append(dst, recordApplicationData, 3, 3, byte(n>>8), byte(n))
	dst = append(dst, content...)
	dst = append(dst, typ)
	nonce := h.nonce()
	hdr := dst[start : start+recordHeaderLen]
	body := dst[start+recordHeaderLen:]
	sealed := h.aead.Seal(body[:0], nonce[:], body, hdr) // in place: the capacity is there
	h.seq++
	return dst[:start+recordHeaderLen+len(sealed)], nil
}

// tls13Records is the record layer of one open TLS 1.3 connection (see
// the top of this file). mu guards everything below it: it is taken by the
// socket's reader (under tlsSock.rmu) for each record, by writers, and by
// the listener's sweep that drops the AEADs of quiet connections; only
// the engine's write runs under it.
type tls13Records struct {
	suite *tls13Suite
	hot   *hotList // where the layer goes when it makes its AEADs; nil: kept

	mu sync.Mutex
	in tls13Half
	// hs holds a partial post-handshake message (a KeyUpdate split over
	// records), hsLen its length; useless counts the consecutive records
	// that carried no application data.
	hs      [5]byte
	hsLen   uint8
	useless uint8

	out    tls13Half
	closed bool // a fatal alert or close_notify was sent: nothing more is
	// listed: the layer is in hot's list; used: a record was sealed or
	// opened since the sweep last looked.
	listed, used bool
}

// touch notes a use of the AEADs, listing r in its hot list if it was
// not. Caller holds r.mu.
func (r *tls13Records) touch() {
	r.used = true
	if !r.listed && r.hot != nil {
		r.listed = true
		r.hot.add(r)
	}
}

// hotList holds the record layers of a listener that have their AEADs;
// sweep drops those of the layers not used since the previous sweep. An
// idle connection then keeps its keys (about 300 bytes) instead of its
// AEADs (about 1.5 KB), and makes them again (about 1 µs each) at its
// next record.
type hotList struct {
	mu     sync.Mutex // a leaf, taken under tls13Records.mu
	layers []*tls13Records
}

func (hl *hotList) add(r *tls13Records) {
	hl.mu.Lock()
	hl.layers = append(hl.layers, r)
	hl.mu.Unlock()
}

// sweep drops the AEADs of the layers not used since the last sweep and
// keeps the others listed.
func (hl *hotList) sweep() {
	hl.mu.Lock()
	layers := hl.layers
	hl.layers = nil
	hl.mu.Unlock()
	keep := layers[:0]
	for _, r := range layers {
		r.mu.Lock()
		if r.used {
			r.used = false
			keep = append(keep, r)
		} else {
			r.listed = false
			r.in.aead, r.out.aead = nil, nil
		}
		r.mu.Unlock()
	}
	clear(layers[len(keep):])
	hl.mu.Lock()
	hl.layers = append(hl.layers, keep...)
	hl.mu.Unlock()
}

// newTLS13Records returns the record layer of a connection on suite id
// whose handshake ended with the given application traffic secrets,
// outSeq records already sent under the server's.
func newTLS13Records(id uint16, clientSecret, serverSecret []byte, outSeq uint64, hot *hotList) (*tls13Records, error) {
	s := tls13SuiteByID(id)
	if s == nil {
		return nil, fmt.Errorf("gateway: tls: cipher suite %04x is not TLS 1.3's", id)
	}
	r := &tls13Records{suite: s, hot: hot}
	if err := r.in.setSecret(s, clientSecret); err != nil {
		return nil, err
	}
	if err := r.out.setSecret(s, serverSecret); err != nil {
		return nil, err
	}
	r.out.seq = outSeq
	r.in.aead, r.out.aead = nil, nil // made at the first record
	return r, nil
}

// sealBufs hold the records of one write until the engine copied them.
var sealBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// write encrypts b into records of application data and hands them to w
// in one write.
func (r *tls13Records) write(w io.Writer, b []byte) error {
	bp := sealBufs.Get().(*[]byte)
	buf := (*bp)[:0]
	r.mu.Lock()
	err := net.ErrClosed
	if !r.closed {
		r.touch()
		err = nil
		for len(b) > 0 && err == nil {
			n := min(len(b), maxPlaintext)
			buf, err = r.out.seal(buf, recordApplicationData, b[:n])
			b = b[n:]
		}
		if err == nil {
			_, err = w.Write(buf)
		}
	}
	r.mu.Unlock()
	if cap(buf) <= 64<<10 {
		*bp = buf[:0]
		sealBufs.Put(bp)
	}
	return err
}

// sendAlert sends alert desc (fatal, or close_notify) unless one was sent,
// and refuses every later write.
func (r *tls13Records) sendAlert(w io.Writer, desc byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.closed = true
	r.touch()
	level := byte(2)
	if desc == alertCloseNotify {
		level = 1
	}
	var buf [recordHeaderLen + 3 + tls13AEADOverhead]byte
	if rec, err := r.out.seal(buf[:0], recordAlert, []byte{level, desc}); err == nil {
		_, _ = w.Write(rec)
	}
}

// keyUpdateLocked answers a KeyUpdate that requested one: a KeyUpdate
// under the current key, then the next key (RFC 8446 §4.6.3). Caller
// holds r.mu.
func (r *tls13Records) keyUpdateLocked(w io.Writer) error {
	if r.closed {
		return nil
	}
	var buf [recordHeaderLen + 6 + tls13AEADOverhead]byte
	rec, err := r.out.seal(buf[:0], recordHandshake, []byte{handshakeTypeKeyUpdate, 0, 0, 1, 0})
	if err != nil {
		return err
	}
	if _, err := w.Write(rec); err != nil {
		return err
	}
	return r.out.update(r.suite)
}

// errTLSPeerClosed is the peer's close_notify or fatal alert: the stream
// ends.
var errTLSPeerClosed = errors.New("gateway: tls: peer closed")

// alertError is a record the connection cannot take: the alert to send.
type alertError byte

func (a alertError) Error() string {
	return fmt.Sprintf("gateway: tls: bad record (alert %d)", byte(a))
}

// readRecord decrypts one whole record into dst (the outer header
// checked by the caller) and returns the application data it carries,
// possibly none. It returns errTLSPeerClosed at the peer's alert, an
// alertError for a record the connection cannot take, or a write error.
func (r *tls13Records) readRecord(w io.Writer, dst, record []byte) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch record[0] {
	case recordApplicationData:
	case recordChangeCipherSpec: // allowed only before the client's Finished (RFC 8446 §5)
		return nil, alertError(alertUnexpectedMessage)
	default:
		return nil, alertError(alertUnexpectedMessage)
	}
	r.touch()
	plain, typ, alert := r.in.open(dst, record)
	if alert != 0 {
		return nil, alertError(alert)
	}
	if r.hsLen > 0 && typ != recordHandshake {
		return nil, alertError(alertUnexpectedMessage) // handshake data interleaved
	}
	if typ == recordApplicationData && len(plain) > 0 {
		r.useless = 0
		return plain, nil
	}
	if r.useless++; r.useless > maxUselessRecords {
		return nil, alertError(alertUnexpectedMessage)
	}
	switch typ {
	case recordApplicationData: // empty
		return nil, nil
	case recordAlert:
		if len(plain) != 2 {
			return nil, alertError(alertUnexpectedMessage)
		}
		if plain[1] == alertUserCanceled {
			return nil, nil // ignored, as crypto/tls does
		}
		return nil, errTLSPeerClosed // close_notify, or a fatal alert
	case recordHandshake:
		if len(plain) == 0 {
			return nil, alertError(alertUnexpectedMessage)
		}
		return nil, r.handshakeData(w, plain)
	default:
		return nil, alertError(alertUnexpectedMessage)
	}
}

// handshakeData takes post-handshake handshake bytes: a client may send
// only KeyUpdate (4 bytes of header, 1 of body), possibly split over
// records, and it must end its record (no message spans a key change).
func (r *tls13Records) handshakeData(w io.Writer, b []byte) error { // r.mu held
	n := copy(r.hs[r.hsLen:], b)
	r.hsLen += uint8(n)
	b = b[n:]
	if r.hs[0] != handshakeTypeKeyUpdate {
		return alertError(alertUnexpectedMessage)
	}
	if r.hsLen >= 4 && (r.hs[1] != 0 || r.hs[2] != 0 || r.hs[3] != 1) {
		return alertError(alertDecodeError)
	}
	if r.hsLen < 5 {
		return nil // the rest comes in the next record
	}
	if len(b) > 0 {
		return alertError(alertUnexpectedMessage)
	}
	requested := r.hs[4]
	r.hsLen = 0
	switch requested {
	case 0:
	case 1:
		if err := r.keyUpdateLocked(w); err != nil {
			return err
		}
	default:
		return alertError(alertDecodeError)
	}
	return r.in.update(r.suite)
}

// checkHeader checks the header of a record of a TLS 1.3 connection and
// returns its payload length, or the alert to send.
func checkHeader(hdr []byte) (int, error) {
	n := int(hdr[3])<<8 | int(hdr[4])
	if hdr[1] != 3 || hdr[2] != 3 {
		return 0, alertError(alertProtocolVersion)
	}
	if n > maxCiphertextTLS13 {
		return 0, alertError(alertRecordOverflow)
	}
	return n, nil
}

// keyCapture collects, during one handshake, what the record layer takes
// over: the application traffic secrets crypto/tls writes to its key log,
// and the records it wrote after the server's secret was known (a
// NewSessionTicket among them is under that secret, and counts in the
// sequence numbers). It is used by the handshake goroutine only.
type keyCapture struct {
	client, server []byte
	written        [][]byte
}

// Write takes one key log line: "LABEL <client random> <secret>\n".
func (k *keyCapture) Write(line []byte) (int, error) {
	f := bytes.Fields(line)
	if len(f) == 3 {
		var dst *[]byte
		switch string(f[0]) {
		case keyLogClientTrafficZero:
			dst = &k.client
		case keyLogServerTrafficZero:
			dst = &k.server
		}
		if dst != nil {
			s, err := hex.AppendDecode(nil, f[2])
			if err != nil {
				return 0, fmt.Errorf("gateway: tls: key log: %w", err)
			}
			*dst = s
		}
	}
	return len(line), nil
}

// wrote notes the records of b, written by crypto/tls, once the server's
// application secret is known.
func (k *keyCapture) wrote(b []byte) {
	if k.server == nil {
		return
	}
	for len(b) >= recordHeaderLen {
		n := min(len(b), recordHeaderLen+(int(b[3])<<8|int(b[4])))
		if b[0] == recordApplicationData {
			k.written = append(k.written, bytes.Clone(b[:n]))
		}
		b = b[n:]
	}
}

// records returns the record layer that takes over from a completed TLS
// 1.3 handshake on suite id, and forgets the secrets.
func (k *keyCapture) records(id uint16, hot *hotList) (*tls13Records, error) {
	defer k.forget()
	if k.client == nil || k.server == nil {
		return nil, errors.New("gateway: tls: no traffic secret in the key log")
	}
	r, err := newTLS13Records(id, k.client, k.server, 0, hot)
	if err != nil {
		return nil, err
	}
	// The records crypto/tls wrote under the server's application key (a
	// session ticket) come after those under its handshake key: count
	// them by opening each with the application key.
	probe := r.out
	for _, rec := range k.written {
		if _, _, alert := probe.open(nil, rec); alert != 0 {
			if probe.seq != 0 {
				return nil, errors.New("gateway: tls: a handshake record after an application record")
			}
			continue
		}
	}
	r.out.seq = probe.seq
	r.out.aead = nil
	return r, nil
}

// forget clears the captured secrets.
func (k *keyCapture) forget() {
	clear(k.client)
	clear(k.server)
	k.client, k.server, k.written = nil, nil, nil
}
